"""A 405 names every method the path takes, in the service's own error shape."""

from __future__ import annotations

import httpx

from tests.serving.conftest import Served


def _allowed(response: httpx.Response) -> list[str]:
    assert response.status_code == 405, response.text
    return [m.strip() for m in response.headers["allow"].split(",")]


def _token_server(url: str) -> None:
    response = httpx.request("OPTIONS", f"{url}/token")
    assert _allowed(response) == ["GET", "POST"]
    body = response.json()
    assert body["error"] == "method_not_allowed"
    assert set(body) == {"error", "error_description", "details"}
    assert _allowed(httpx.put(f"{url}/token")) == ["GET", "POST"]


def _registry(url: str) -> None:
    response = httpx.patch(f"{url}/v2/team/app/manifests/latest")
    assert _allowed(response) == ["GET", "HEAD", "PUT", "DELETE"]
    (error,) = response.json()["errors"]
    assert error["code"] == "UNSUPPORTED"
    upload = f"{url}/v2/team/app/blobs/uploads/some-id"
    assert _allowed(httpx.post(upload)) == ["GET", "HEAD", "PUT", "PATCH", "DELETE"]
    assert _allowed(httpx.put(f"{url}/v2/")) == ["GET", "HEAD"]


def test_a_405_lists_every_method_of_the_path(standard: Served) -> None:
    (_token_server if standard.name == "tokenserver" else _registry)(standard.url)

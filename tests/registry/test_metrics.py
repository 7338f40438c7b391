"""The registry's Prometheus metrics: requests by route template, body bytes, auth failures."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from registry_proxy.app import create_app
from registry_proxy.config import Config, load_config
from registry_proxy.metrics import AUTH_FAILURE_REASONS, RegistryMetrics, auth_failure_reason
from tests.registry.conftest import Mint, raw_request, token_auth

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

ALL = "repository:team/app:pull,push,delete"
UPLOADS = "/v2/{name}/blobs/uploads/"
UPLOAD = "/v2/{name}/blobs/uploads/{upload_id}"
BLOB = "/v2/{name}/blobs/{digest}"


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")  # no token: the endpoint is outside /v2/
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over samples of `name` whose labels include `labels` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def config_for(storage_root: Path, keys_dir: Path, **http: Any) -> Config:
    return Config.model_validate(
        {
            "http": http,
            "storage": {"filesystem": {"rootdirectory": str(storage_root)}},
            "auth": token_auth(keys_dir),
        }
    )


@pytest.fixture
def disabled(storage_root: Path, keys_dir: Path) -> Iterator[TestClient]:
    config = config_for(storage_root, keys_dir, metrics={"enabled": False})
    with TestClient(create_app(config)) as client:
        yield client


def test_push_and_pull_are_counted_by_route_with_body_bytes(
    registry: TestClient, mint: Mint
) -> None:
    data = os.urandom(300_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    pushed = registry.post(
        f"/v2/team/app/blobs/uploads/?digest={digest}", content=data, headers=mint(ALL)
    )
    assert pushed.status_code == 201, pushed.text
    pulled = registry.get(f"/v2/team/app/blobs/{digest}", headers=mint(ALL))
    assert pulled.status_code == 200 and pulled.content == data
    head = registry.head(f"/v2/team/app/blobs/{digest}", headers=mint(ALL))
    assert head.status_code == 200
    text = registry.get("/metrics").text
    samples = parse(text)

    requests = "registry_http_requests_total"
    assert value(samples, requests, method="POST", route=UPLOADS, status="201") == 1
    assert value(samples, requests, method="GET", route=BLOB, status="200") == 1
    assert value(samples, requests, method="HEAD", route=BLOB, status="200") == 1
    bytes_in = value(samples, "registry_http_request_bytes_total", method="POST", route=UPLOADS)
    assert bytes_in >= len(data)
    bytes_out = value(samples, "registry_http_response_bytes_total", method="GET", route=BLOB)
    assert bytes_out >= len(data)
    assert value(samples, "registry_http_response_bytes_total", method="HEAD", route=BLOB) == 0
    duration = "registry_http_request_duration_seconds_count"
    assert value(samples, duration, method="GET", route=BLOB) == 1
    assert value(samples, duration, method="POST", route=UPLOADS) == 1
    # Labels carry templates only: no repository names, digests or other raw paths.
    assert "team/app" not in text and digest not in text
    routes = {dict(ls).get("route") for (n, ls) in samples if n == requests}
    assert routes <= {UPLOADS, BLOB, "/metrics", "unmatched"}


def test_chunked_upload_counts_every_chunk(registry: TestClient, mint: Mint) -> None:
    started = registry.post("/v2/team/app/blobs/uploads/", headers=mint(ALL))
    assert started.status_code == 202, started.text
    location = started.headers["location"]
    chunks = [os.urandom(70_000), os.urandom(50_000), os.urandom(1)]
    body: list[dict[str, object]] = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    statuses = raw_request(
        registry,
        "PATCH",
        location.split("?")[0],
        {**mint(ALL), "content-type": "application/octet-stream"},
        body,
    )
    assert statuses == [202]
    samples = scrape(registry)
    got = value(samples, "registry_http_request_bytes_total", method="PATCH", route=UPLOAD)
    assert got == sum(len(c) for c in chunks)
    assert value(samples, "registry_http_requests_total", method="PATCH", status="202") == 1


def test_auth_failures_are_counted_by_reason(registry: TestClient, mint: Mint) -> None:
    before = scrape(registry)
    for reason in AUTH_FAILURE_REASONS:
        assert value(before, "registry_auth_failures_total", reason=reason) == 0

    assert registry.get("/v2/").status_code == 401
    assert registry.get("/v2/team/app/tags/list").status_code == 401
    bad = {"Authorization": "Bearer not-a-jwt"}
    assert registry.get("/v2/team/app/tags/list", headers=bad).status_code == 401
    pull_only = mint("repository:team/app:pull")
    assert registry.post("/v2/team/app/blobs/uploads/", headers=pull_only).status_code == 401
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}
    assert registry.get("/v2/", headers=basic).status_code == 401
    assert registry.get("/v2/", headers=mint()).status_code == 200
    after = scrape(registry)

    failures = "registry_auth_failures_total"
    assert value(after, failures, reason="missing") == 2
    assert value(after, failures, reason="invalid_token") == 1
    assert value(after, failures, reason="insufficient_scope") == 1
    assert value(after, failures, reason="malformed") == 1
    requests = "registry_http_requests_total"
    assert value(after, requests, method="GET", route="/v2/", status="401") == 2
    assert value(after, requests, method="GET", route="/v2/", status="200") == 1
    assert value(after, requests, route="/v2/{name}/tags/list", status="401") == 2


def test_unmatched_paths_share_one_label(registry: TestClient) -> None:
    assert registry.get("/somewhere/alice/secret").status_code == 404
    text = registry.get("/metrics").text
    assert value(parse(text), "registry_http_requests_total", route="unmatched", status="404") == 1
    assert "alice" not in text and "secret" not in text


def test_metrics_can_be_turned_off(disabled: TestClient, mint: Mint) -> None:
    assert disabled.app.state.metrics is None  # type: ignore[attr-defined]
    assert disabled.get("/metrics").status_code == 404
    assert disabled.get("/v2/").status_code == 401  # the challenge still works
    assert disabled.get("/v2/", headers=mint()).status_code == 200


def test_switch_from_yaml_and_environment(tmp_path: Path, keys_dir: Path) -> None:
    path = tmp_path / "registry.yaml"
    path.write_text(
        "auth:\n  token:\n    realm: http://x/token\n    service: registry\n"
        f"    issuer: i\n    rootcertbundle: {keys_dir / 'bundle.pem'}\n"
    )
    assert load_config(path, environ={}).http.metrics.enabled is True
    env = {"REGISTRY_PROXY_HTTP_METRICS_ENABLED": "false"}
    assert load_config(path, environ=env).http.metrics.enabled is False


def test_apps_do_not_share_counts(registry: TestClient, storage_root: Path, keys_dir: Path) -> None:
    other_config = config_for(storage_root.with_name("other"), keys_dir)
    with TestClient(create_app(other_config)) as other:
        for _ in range(3):
            registry.get("/v2/")
        assert value(scrape(registry), "registry_http_requests_total", route="/v2/") == 3
        assert value(scrape(other), "registry_http_requests_total", route="/v2/") == 0
        assert value(scrape(other), "registry_auth_failures_total", reason="missing") == 0


def test_reason_mapping() -> None:
    challenge = 'Bearer realm="r",service="s",scope="repository:a:pull"'
    assert auth_failure_reason(None, challenge) == "missing"
    assert auth_failure_reason("  ", challenge) == "missing"
    assert auth_failure_reason("Basic abc", challenge) == "malformed"
    assert auth_failure_reason("Bearer x", challenge + ',error="invalid_token"') == "invalid_token"
    assert (
        auth_failure_reason("Bearer x", challenge + ',error="insufficient_scope"')
        == "insufficient_scope"
    )
    # An error we do not know cannot become a new label value.
    assert auth_failure_reason("Bearer x", challenge + ',error="alice"') == "malformed"
    metrics = RegistryMetrics()
    with pytest.raises(ValueError):
        metrics.auth_failure("alice")

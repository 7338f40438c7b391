"""The request context on log records, and no secret in any log line or error body."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from authcore.jsonlog import ContextFilter
from tokenserver.context import KEYS

SERVICE = "registry"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _records(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == message]


def test_token_request_logs_subject_requested_and_granted(
    client: TestClient, add_user: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    password = add_user("alice")
    caplog.handler.addFilter(ContextFilter(KEYS))
    caplog.clear()
    response = client.get(
        "/token",
        params=[
            ("service", SERVICE),
            ("scope", "repository:alice/app:push,pull"),
            ("scope", "repository:bob/x:pull"),
        ],
        auth=("alice", password),
    )
    assert response.status_code == 200

    # One line for the request: the access line, carrying what the grant set.
    assert _records(caplog, "token issued") == []
    (access,) = _records(caplog, "request")
    context = access.context  # type: ignore[attr-defined]
    assert context["account"] == "alice"
    assert context["requested"] == ["repository:alice/app:pull,push", "repository:bob/x:pull"]
    assert context["granted"] == ["repository:alice/app:pull,push"]
    assert context["request_id"]
    assert context["backend"] == "database"
    assert context["kind"] == "user"
    assert context["via"] == "basic"
    assert access.status == 200 and access.path == "/token"  # type: ignore[attr-defined]


def test_context_does_not_leak_between_requests(
    client: TestClient, add_user: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    password = add_user("alice")
    caplog.handler.addFilter(ContextFilter(KEYS))
    client.get("/token", params={"service": SERVICE}, auth=("alice", password))
    caplog.clear()
    client.get("/token", params={"service": SERVICE})  # anonymous
    (issued,) = _records(caplog, "request")
    assert issued.context["account"] == ""  # type: ignore[attr-defined]
    assert issued.context["granted"] == []  # type: ignore[attr-defined]
    assert issued.context["kind"] == "anonymous"  # type: ignore[attr-defined]
    assert "backend" not in issued.context or issued.context["backend"] == ""  # type: ignore[attr-defined]


def test_refused_request_is_logged_with_its_error(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(ContextFilter(KEYS))
    client.get("/token", params={"service": SERVICE, "scope": "repository:Bad:pull"})
    (refused,) = _records(caplog, "request refused")
    assert refused.error == "invalid_scope" and refused.status == 400  # type: ignore[attr-defined]
    assert "request_id" in refused.context  # type: ignore[attr-defined]


def test_no_secret_in_logs_or_error_bodies(
    client: TestClient,
    add_user: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
    leak_guard: Any,
) -> None:
    password = add_user("alice")
    wrong = leak_guard.add("wrong-pw-7d1e0c")
    stale = leak_guard.add("rt_stale-refresh-9f3b")
    caplog.handler.addFilter(ContextFilter(KEYS))
    bodies: list[str] = []

    def post(form: dict[str, str]) -> Any:
        response = client.post("/token", content=urlencode(form), headers=FORM)
        bodies.append(response.text)
        return response

    def get(**kwargs: Any) -> Any:
        response = client.get("/token", **kwargs)
        bodies.append(response.text)
        return response

    login = get(
        params={"service": SERVICE, "offline_token": "true", "account": "alice"},
        auth=("alice", password),
    )
    refresh = leak_guard.add(login.json()["refresh_token"])
    get(params={"service": SERVICE}, auth=("alice", wrong))
    get(params={"service": SERVICE}, auth=("nobody", wrong))
    get(
        params={"service": SERVICE},
        headers={"Authorization": "Basic " + base64.b64encode(wrong.encode()).decode()},
    )
    get(params={"service": SERVICE, "account": "bob"}, auth=("alice", password))
    base = {"client_id": "c", "service": SERVICE}
    post({**base, "grant_type": "password", "username": "alice", "password": wrong})
    post({**base, "grant_type": "password", "username": "alice", "password": password})
    post({**base, "grant_type": "refresh_token", "refresh_token": stale})
    post({**base, "grant_type": "refresh_token", "refresh_token": refresh, "service": "x"})
    post({**base, "grant_type": "refresh_token", "refresh_token": refresh, "scope": "A:B"})
    post({**base, "grant_type": "magic", "refresh_token": refresh, "password": password})
    ok = post({**base, "grant_type": "refresh_token", "refresh_token": refresh})
    assert ok.status_code == 200

    error_bodies = [b for b in bodies if '"error"' in b]
    assert len(error_bodies) == 9
    for body in error_bodies:
        assert not leak_guard.found_in(body), body
    everything = caplog.text + "".join(r.getMessage() + repr(vars(r)) for r in caplog.records)
    assert not leak_guard.found_in(everything)
    assert caplog.records  # something was logged, so the scan meant something

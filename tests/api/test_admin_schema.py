"""Schemathesis against the admin API's own OpenAPI schema: no input makes it answer 5xx.

Every operation under /admin/v1 gets generated requests, valid and invalid,
as an admin (HTTP Basic), and valid ones without credentials. The app runs in
process behind the `client` fixture, which owns its lifespan; schemathesis
reaches the same app object through a wrapper that leaves the lifespan alone.
Generation is derandomized, so a run is repeatable.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode, Response
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import LeakGuard

ADMIN = "fuzz-root"
PREFIX = "/admin/v1/"
USER_PATH = "/admin/v1/users/{name}"
EXAMPLES = 50
UNAUTHENTICATED_EXAMPLES = 5

# No 5xx, and every answer (status, content type, body) as the schema documents it.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

ASGIApp = Callable[..., Any]


def _http_only(app: ASGIApp) -> ASGIApp:
    """`app` for HTTP; refuses the lifespan scope, which the `client` fixture already ran."""

    async def wrapper(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("the TestClient runs the lifespan")
        await app(scope, receive, send)

    return wrapper


def _operations(client: TestClient) -> list[APIOperation]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", _http_only(client.app))
    operations = [op.ok() for op in schema.get_all_operations()]
    admin_ops = [op for op in operations if op.path.startswith(PREFIX)]
    assert len(admin_ops) >= 10, [op.label for op in operations]
    return admin_ops


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _call(case: Case, headers: dict[str, str] | None = None) -> Response:
    try:
        return case.call(headers=headers)
    except Exception as exc:  # an exception escaping the app is a 500 to a real client
        raise AssertionError(f"unhandled {exc!r} for\n{case.as_curl_command()}") from exc


def _locks_admin_out(case: Case) -> bool:
    """Changing or deleting the admin running the fuzz would turn the rest into 401s."""
    name = (case.path_parameters or {}).get("name")
    return name == ADMIN and case.operation.path.startswith(USER_PATH)


def _assert_error_body(case: Case, response: Response) -> None:
    """4xx answers are JSON in the token endpoint's error shape."""
    if not 400 <= response.status_code < 500:
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith("application/json"), (
        f"{response.status_code} {content_type} for\n{case.as_curl_command()}"
    )
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str), (
        f"{response.status_code} {body!r} for\n{case.as_curl_command()}"
    )


def _fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


@pytest.mark.slow  # a fuzzing run: half a minute alone, minutes on a busy machine
def test_admin_api_never_answers_5xx(
    client: TestClient, add_user: Callable[..., str], leak_guard: LeakGuard
) -> None:
    password = add_user(ADMIN, groups=("admin",))
    auth = {"Authorization": _basic(ADMIN, password)}
    # Something for the listings and deletions to find besides what the fuzzer makes.
    created = client.post(
        "/admin/v1/ci-tokens",
        json={"name": "seed", "scopes": ["repository:team/*:pull"], "ttl": 3600},
        headers=auth,
    )
    assert created.status_code == 201, created.text
    leak_guard.add(created.json()["secret"])
    add_user("seed-user")

    statuses: dict[str, set[int]] = {}
    for operation in _operations(client):
        statuses[operation.label] = set()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @_fuzz_settings(EXAMPLES)
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Case) -> None:
                hypothesis.assume(not _locks_admin_out(case))
                response = _call(case, auth)
                statuses[case.operation.label].add(response.status_code)
                case.validate_response(response, checks=CHECKS, headers=auth)
                _assert_error_body(case, response)

            try:
                run()
            except Unsatisfiable:
                # No invalid input exists for, e.g., a bare string in the path.
                if mode is GenerationMode.POSITIVE:
                    raise

    # The admin stayed an admin throughout: every operation got past authentication.
    for label, codes in statuses.items():
        assert codes - {401, 403}, f"{label} was never authorised: {sorted(codes)}"
    # The listings still render whatever the fuzzer left in the database.
    for path in ("users", "ci-tokens", "refresh-tokens", "audit"):
        listed = client.get(f"/admin/v1/{path}", headers=auth)
        assert listed.status_code == 200, (path, listed.text)


def test_admin_api_without_credentials_is_401(client: TestClient) -> None:
    operations = _operations(client)
    answered: set[str] = set()
    for operation in operations:

        @_fuzz_settings(UNAUTHENTICATED_EXAMPLES)
        @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
        def run(case: Case) -> None:
            response = _call(case)
            answered.add(case.operation.label)
            case.validate_response(response, checks=CHECKS)
            assert response.status_code == 401, (
                f"{response.status_code} {response.text!r} for\n{case.as_curl_command()}"
            )
            assert response.json()["error"] == "unauthorized"
            challenge = (response.headers.get("www-authenticate") or [""])[0]
            assert challenge.startswith("Basic "), challenge

        run()

    assert answered == {op.label for op in operations}

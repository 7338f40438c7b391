"""POST /token (SPEC B): password and refresh_token grants, bodies, and RFC 6749 errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from tokenserver.cli import main as cli
from tokenserver.config import Config
from tokenserver.store.users import UserStore

SERVICE = "registry"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

StartClient = Callable[[Config], AbstractContextManager[TestClient]]


def _post(client: TestClient, data: Any, **kwargs: Any) -> Any:
    body = urlencode(data, doseq=True) if not isinstance(data, bytes | str) else data
    return client.post("/token", content=body, headers=kwargs.pop("headers", FORM), **kwargs)


def _password_form(user: str, password: str, **extra: Any) -> dict[str, Any]:
    return {
        "grant_type": "password",
        "client_id": "containerd-client",
        "service": SERVICE,
        "username": user,
        "password": password,
        **extra,
    }


def _assert_oauth_error(response: Any, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    assert isinstance(body["error_description"], str) and body["error_description"]
    assert "access_token" not in body
    return body


@pytest.fixture
def alice(add_user: Callable[..., str]) -> str:
    return add_user("alice")


@pytest.fixture
def refresh_token(client: TestClient, alice: str, leak_guard: Any) -> str:
    response = _post(client, _password_form("alice", alice, access_type="offline"))
    assert response.status_code == 200, response.text
    return str(leak_guard.add(response.json()["refresh_token"]))


def _refresh_form(token: str, **extra: Any) -> dict[str, Any]:
    return {
        "grant_type": "refresh_token",
        "client_id": "docker",
        "service": SERVICE,
        "refresh_token": token,
        **extra,
    }


def test_password_grant_containerd_style(
    client: TestClient, alice: str, decode_token: Callable[[str], Any], config: Config
) -> None:
    # One space-separated value with overlapping scopes, as containerd sends it.
    response = _post(
        client,
        _password_form(
            "alice", alice, scope="repository:alice/app:pull repository:alice/app:pull,push"
        ),
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["access_token"]
    assert body["scope"] == "repository:alice/app:pull,push"
    assert body["expires_in"] == config.token.expiration
    assert body["issued_at"].endswith("Z")
    assert "refresh_token" not in body
    claims = decode_token(body["access_token"])
    assert claims["sub"] == "alice"
    assert claims["access"] == [
        {"type": "repository", "name": "alice/app", "actions": ["pull", "push"]}
    ]


def test_password_grant_with_repeated_scope_fields(
    client: TestClient, alice: str, decode_token: Callable[[str], Any]
) -> None:
    form = _password_form("alice", alice)
    form["scope"] = [
        "repository:alice/a:pull",
        "repository:alice/b:push",
        "repository:alice/a:push",
    ]
    body = _post(client, form).json()
    assert body["scope"] == "repository:alice/a:pull,push repository:alice/b:push"
    assert [a["name"] for a in decode_token(body["access_token"])["access"]] == [
        "alice/a",
        "alice/b",
    ]


def test_scope_in_the_answer_is_the_grant(client: TestClient, alice: str) -> None:
    form = _password_form("alice", alice, scope="repository:bob/x:pull repository:alice/y:*")
    assert _post(client, form).json()["scope"] == "repository:alice/y:delete,pull,push"
    nothing = _post(client, _password_form("alice", alice, scope="repository:bob/x:pull"))
    assert nothing.status_code == 200
    assert nothing.json()["scope"] == ""
    assert _post(client, _password_form("alice", alice)).json()["scope"] == ""


def test_offline_password_grant_then_refresh_grant(
    client: TestClient, refresh_token: str, decode_token: Callable[[str], Any]
) -> None:
    response = _post(client, _refresh_form(refresh_token, scope="repository:alice/app:push,pull"))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["refresh_token"] == refresh_token
    assert body["scope"] == "repository:alice/app:pull,push"
    claims = decode_token(body["access_token"])
    assert claims["sub"] == "alice"
    second = _post(client, _refresh_form(refresh_token)).json()
    assert second["access_token"] != body["access_token"]
    assert decode_token(second["access_token"])["jti"] != claims["jti"]


def test_refresh_token_from_get_works_on_post(
    client: TestClient, alice: str, leak_guard: Any
) -> None:
    # docker login: GET offline_token=true, then only ever the refresh grant.
    login = client.get(
        "/token",
        params={
            "account": "alice",
            "client_id": "docker",
            "offline_token": "true",
            "service": SERVICE,
        },
        auth=("alice", alice),
    )
    token = leak_guard.add(login.json()["refresh_token"])
    response = _post(client, _refresh_form(token, scope="repository:alice/x:pull"))
    assert response.status_code == 200
    assert response.json()["scope"] == "repository:alice/x:pull"


def test_chunked_body_without_content_length(client: TestClient, refresh_token: str) -> None:
    body = urlencode(
        [
            ("client_id", "containers/image"),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("scope", "repository:alice/a:pull"),
            ("scope", "repository:alice/b:pull,push"),
            ("service", SERVICE),
        ]
    ).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 7):
            yield body[i : i + 7]

    response = client.post("/token", content=chunks(), headers=FORM)
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "repository:alice/a:pull repository:alice/b:pull,push"


def test_charset_in_content_type_is_accepted(client: TestClient, alice: str) -> None:
    response = _post(
        client,
        _password_form("alice", alice),
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"},
    )
    assert response.status_code == 200


@pytest.mark.parametrize("missing", ["service", "client_id", "grant_type", "username", "password"])
def test_missing_parameter_is_invalid_request(client: TestClient, alice: str, missing: str) -> None:
    form = _password_form("alice", alice)
    del form[missing]
    _assert_oauth_error(_post(client, form), 400, "invalid_request")


def test_missing_refresh_token_is_invalid_request(client: TestClient) -> None:
    form = _refresh_form("x")
    del form["refresh_token"]
    _assert_oauth_error(_post(client, form), 400, "invalid_request")
    _assert_oauth_error(_post(client, _refresh_form("")), 400, "invalid_request")


def test_unknown_service_and_repeated_fields(client: TestClient, alice: str) -> None:
    _assert_oauth_error(
        _post(client, _password_form("alice", alice, service="other")), 400, "invalid_request"
    )
    form = _password_form("alice", alice)
    form["username"] = ["alice", "bob"]
    _assert_oauth_error(_post(client, form), 400, "invalid_request")


def test_unknown_grant_type(client: TestClient, alice: str) -> None:
    form = _password_form("alice", alice, grant_type="client_credentials")
    _assert_oauth_error(_post(client, form), 400, "unsupported_grant_type")


def test_malformed_scope_is_invalid_scope(client: TestClient, alice: str) -> None:
    form = _password_form("alice", alice, scope="repository:alice/App:pull")
    _assert_oauth_error(_post(client, form), 400, "invalid_scope")


@pytest.mark.parametrize("who", ["alice", "nobody"])
def test_wrong_password_is_invalid_grant(client: TestClient, alice: str, who: str) -> None:
    body = _assert_oauth_error(
        _post(client, _password_form(who, "not-the-password")), 400, "invalid_grant"
    )
    assert alice not in str(body)


def test_disabled_user_password_grant(client: TestClient, alice: str, users: UserStore) -> None:
    users.set_disabled("alice", True)
    _assert_oauth_error(_post(client, _password_form("alice", alice)), 400, "invalid_grant")


def test_unknown_refresh_token(client: TestClient) -> None:
    _assert_oauth_error(_post(client, _refresh_form("rt_not-a-real-token")), 400, "invalid_grant")


def test_refresh_token_for_another_service(
    make_config: Callable[..., Config],
    start_client: StartClient,
    add_user: Callable[..., str],
    leak_guard: Any,
) -> None:
    cfg = make_config({"token": {"service": ["registry", "other"]}})
    password = add_user("alice")
    with start_client(cfg) as client:
        token = leak_guard.add(
            _post(client, _password_form("alice", password, access_type="offline")).json()[
                "refresh_token"
            ]
        )
        assert _post(client, _refresh_form(token)).status_code == 200
        _assert_oauth_error(
            _post(client, _refresh_form(token, service="other")), 400, "invalid_grant"
        )


def test_revoked_refresh_token(
    client: TestClient, refresh_token: str, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _post(client, _refresh_form(refresh_token)).status_code == 200
    assert cli(["refresh-token", "revoke", "--user", "alice", "--config", str(config_path)]) == 0
    assert "revoked 1 refresh token(s) of alice" in capsys.readouterr().out
    _assert_oauth_error(_post(client, _refresh_form(refresh_token)), 400, "invalid_grant")


def test_expired_refresh_token(
    client: TestClient, refresh_token: str, clock: Any, config: Config
) -> None:
    clock.advance(config.token.refresh_expiration - 1)
    assert _post(client, _refresh_form(refresh_token)).status_code == 200
    clock.advance(1)
    _assert_oauth_error(_post(client, _refresh_form(refresh_token)), 400, "invalid_grant")


def test_refresh_token_of_a_deleted_user(
    client: TestClient, refresh_token: str, users: UserStore
) -> None:
    users.delete("alice")  # directly, so the token itself stays unrevoked
    _assert_oauth_error(_post(client, _refresh_form(refresh_token)), 400, "invalid_grant")


def test_refresh_token_of_a_user_deleted_by_the_cli(
    client: TestClient, refresh_token: str, config_path: Path, add_user: Callable[..., str]
) -> None:
    assert cli(["user", "del", "alice", "--config", str(config_path)]) == 0
    _assert_oauth_error(_post(client, _refresh_form(refresh_token)), 400, "invalid_grant")
    # A new account with the same name does not inherit the old login.
    add_user("alice")
    _assert_oauth_error(_post(client, _refresh_form(refresh_token)), 400, "invalid_grant")


def test_refresh_token_of_a_disabled_user(
    client: TestClient, refresh_token: str, users: UserStore
) -> None:
    users.set_disabled("alice", True)
    _assert_oauth_error(_post(client, _refresh_form(refresh_token)), 400, "invalid_grant")
    users.set_disabled("alice", False)
    assert _post(client, _refresh_form(refresh_token)).status_code == 200


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "multipart/form-data; boundary=x", "text/plain"]
)
def test_wrong_content_type(client: TestClient, alice: str, content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = _post(client, _password_form("alice", alice), headers=headers)
    _assert_oauth_error(response, 400, "invalid_request")


def test_non_utf8_body_is_400(client: TestClient) -> None:
    _assert_oauth_error(_post(client, b"grant_type=password&username=%ff"), 400, "invalid_request")
    _assert_oauth_error(_post(client, "grant_type=pässword".encode()), 400, "invalid_request")


@pytest.fixture
def small_client(
    make_config: Callable[..., Config], start_client: StartClient
) -> Iterator[TestClient]:
    with start_client(make_config({"server": {"max_body_bytes": 1024}})) as client:
        yield client


def test_body_over_the_limit_with_content_length(small_client: TestClient) -> None:
    body = urlencode({"grant_type": "password", "pad": "x" * 2000})
    response = small_client.post("/token", content=body, headers=FORM)
    _assert_oauth_error(response, 413, "invalid_request")


def test_declared_length_over_the_limit_is_refused_before_reading(
    small_client: TestClient, alice: str
) -> None:
    # The body itself is small and valid; the declared length alone decides.
    body = urlencode(_password_form("alice", alice))
    response = small_client.post("/token", content=body, headers={**FORM, "Content-Length": "5000"})
    _assert_oauth_error(response, 413, "invalid_request")


def test_body_over_the_limit_chunked(small_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"grant_type=password&pad="
        for _ in range(20):
            yield b"x" * 100

    response = small_client.post("/token", content=chunks(), headers=FORM)
    _assert_oauth_error(response, 413, "invalid_request")


def test_body_at_the_limit_is_read(small_client: TestClient) -> None:
    body = urlencode({"grant_type": "password", "client_id": "c", "service": SERVICE})
    body += "&pad=" + "x" * (1024 - len(body) - 5)
    assert len(body) == 1024
    response = small_client.post("/token", content=body, headers=FORM)
    # Past the size check: the form is parsed (and lacks a username).
    _assert_oauth_error(response, 400, "invalid_request")
    assert "username" in response.json()["error_description"]

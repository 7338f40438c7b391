"""GET /token (SPEC A, C): claims, grants, anonymous, refresh tokens, and every 4xx."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from authcore.jwk import libtrust_kid
from tokenserver.config import Config
from tokenserver.keys import generate_key
from tokenserver.passwords import hash_password
from tokenserver.store.db import Database

SERVICE = "registry"

StartClient = Callable[[Config], AbstractContextManager[TestClient]]


def _basic(raw: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def _assert_error(response: Any, status: int, error: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["error"] and body["error_description"]
    if error is not None:
        assert body["error"] == error
    return body


def test_token_claims_follow_the_spec(
    client: TestClient,
    add_user: Callable[..., str],
    decode_token: Callable[[str], dict[str, Any]],
    config: Config,
) -> None:
    password = add_user("alice")
    response = client.get(
        "/token",
        params={"service": SERVICE, "scope": "repository:alice/app:pull,push", "account": "alice"},
        auth=("alice", password),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == config.token.expiration
    assert "refresh_token" not in body
    assert response.headers["cache-control"] == "no-store"

    header = jwt.get_unverified_header(body["token"])
    assert header["typ"] == "JWT"
    assert header["alg"] == "ES256"
    jwks = client.get("/.well-known/jwks.json").json()
    (jwk,) = jwks["keys"]
    assert header["kid"] == jwk["kid"] == libtrust_kid(jwt.PyJWK(jwk).key)
    assert re.fullmatch(r"[A-Z2-7]{4}(:[A-Z2-7]{4}){11}", header["kid"])

    claims = decode_token(body["token"])
    assert claims["iss"] == config.token.issuer
    assert claims["sub"] == "alice"
    assert isinstance(claims["aud"], str) and claims["aud"] == SERVICE
    for key in ("exp", "nbf", "iat"):
        assert type(claims[key]) is int
    assert claims["exp"] - claims["iat"] == config.token.expiration
    assert claims["nbf"] <= claims["iat"]
    assert claims["access"] == [
        {"type": "repository", "name": "alice/app", "actions": ["pull", "push"]}
    ]
    # The raw payload holds integers, not floats.
    raw = base64.urlsafe_b64decode(body["token"].split(".")[1] + "==")
    assert re.search(rb'"exp":\d+[,}]', raw) and b'"aud":"registry"' in raw

    issued = dt.datetime.strptime(body["issued_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert int(issued.timestamp()) == claims["iat"]

    again = client.get("/token", params={"service": SERVICE}, auth=("alice", password)).json()
    assert decode_token(again["token"])["jti"] != claims["jti"]


def test_issued_at_follows_the_app_clock(
    client: TestClient, add_user: Callable[..., str], clock: Any
) -> None:
    password = add_user("alice")
    body = client.get("/token", params={"service": SERVICE}, auth=("alice", password)).json()
    assert body["issued_at"] == clock.now.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert body["issued_at"].endswith("Z")


def test_login_without_scope_is_an_empty_grant(
    client: TestClient, add_user: Callable[..., str], decode_token: Callable[[str], Any]
) -> None:
    password = add_user("alice")
    response = client.get(
        "/token", params={"account": "alice", "service": SERVICE}, auth=("alice", password)
    )
    assert response.status_code == 200
    assert decode_token(response.json()["token"])["access"] == []


def test_partial_and_empty_grants_are_200(
    client: TestClient, add_user: Callable[..., str], decode_token: Callable[[str], Any]
) -> None:
    password = add_user("alice")
    partial = client.get(
        "/token",
        params=[
            ("service", SERVICE),
            ("scope", "repository:alice/app:pull,push"),
            ("scope", "repository:bob/other:pull"),
            ("scope", "registry:catalog:*"),
        ],
        auth=("alice", password),
    )
    assert partial.status_code == 200
    assert decode_token(partial.json()["token"])["access"] == [
        {"type": "repository", "name": "alice/app", "actions": ["pull", "push"]}
    ]
    empty = client.get(
        "/token",
        params={"service": SERVICE, "scope": "repository:bob/other:pull"},
        auth=("alice", password),
    )
    assert empty.status_code == 200
    assert decode_token(empty.json()["token"])["access"] == []


def test_scopes_space_separated_and_repeated_are_merged(
    client: TestClient, add_user: Callable[..., str], decode_token: Callable[[str], Any]
) -> None:
    password = add_user("alice")
    response = client.get(
        "/token",
        params=[
            ("service", SERVICE),
            ("scope", "repository:alice/a:pull repository:alice/b:push"),
            ("scope", "repository:alice/a:push"),
        ],
        auth=("alice", password),
    )
    assert decode_token(response.json()["token"])["access"] == [
        {"type": "repository", "name": "alice/a", "actions": ["pull", "push"]},
        {"type": "repository", "name": "alice/b", "actions": ["push"]},
    ]


def test_answers_stay_each_their_own_past_the_memos(
    make_config: Callable[..., Config],
    start_client: StartClient,
    add_user: Callable[..., str],
    decode_token: Callable[[str], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Parsed scopes and the rules' answers are remembered, boundedly: many distinct
    questions later, each answer is still its own and the memos hold no more."""
    from tokenserver import grants
    from tokenserver.authz import acl

    monkeypatch.setattr(grants, "_PARSED_ENTRIES", 8)
    monkeypatch.setattr(acl, "MEMO_ENTRIES", 8)
    with start_client(make_config()) as client:
        password = add_user("alice")
        for round_ in range(2):
            for n in range(20):
                scope = f"repository:alice/r{n}:pull repository:bob/r{n}:pull"
                response = client.get(
                    "/token", params={"service": SERVICE, "scope": scope}, auth=("alice", password)
                )
                access = decode_token(response.json()["token"])["access"]
                assert access == [
                    {"type": "repository", "name": f"alice/r{n}", "actions": ["pull"]}
                ], (round_, n)
            # A malformed scope is refused every time: refusals are never remembered.
            for _ in range(2):
                bad = client.get("/token", params={"service": SERVICE, "scope": "repository:x"})
                _assert_error(bad, 400, "invalid_scope")
        service = client.app.state.services.grants  # type: ignore[attr-defined]
        assert len(service._parsed) == 8
        assert len(service.policy._memo) == 8


def test_admin_gets_catalog(
    client: TestClient, add_user: Callable[..., str], decode_token: Callable[[str], Any]
) -> None:
    password = add_user("root", groups=("admin",))
    response = client.get(
        "/token",
        params={"service": SERVICE, "scope": "registry:catalog:*"},
        auth=("root", password),
    )
    assert decode_token(response.json()["token"])["access"] == [
        {"type": "registry", "name": "catalog", "actions": ["*"]}
    ]


def test_anonymous_gets_an_empty_grant(
    client: TestClient, decode_token: Callable[[str], Any]
) -> None:
    response = client.get(
        "/token", params={"service": SERVICE, "scope": "repository:alice/app:pull"}
    )
    assert response.status_code == 200
    claims = decode_token(response.json()["token"])
    assert claims["sub"] == ""
    assert claims["access"] == []


def test_anonymous_cannot_ask_for_offline(client: TestClient) -> None:
    response = client.get("/token", params={"service": SERVICE, "offline_token": "true"})
    _assert_error(response, 401)


@pytest.mark.parametrize("who", ["alice", "nobody", "disabled"])
def test_bad_credentials_are_401_with_a_basic_challenge(
    client: TestClient, add_user: Callable[..., str], who: str, config: Config
) -> None:
    add_user("alice")
    add_user("disabled", password="disabled-pw-123", disabled=True)
    password = "disabled-pw-123" if who == "disabled" else "wrong-password"
    response = client.get("/token", params={"service": SERVICE}, auth=(who, password))
    body = _assert_error(response, 401)
    assert response.headers["www-authenticate"] == f'Basic realm="{config.token.issuer}"'
    assert "token" not in body and "access_token" not in body
    assert password not in response.text


def test_offline_token_returns_a_refresh_token_stored_hashed(
    client: TestClient, add_user: Callable[..., str], database: Database, leak_guard: Any
) -> None:
    password = add_user("alice")
    response = client.get(
        "/token",
        params={
            "account": "alice",
            "client_id": "docker",
            "offline_token": "true",
            "service": SERVICE,
        },
        auth=("alice", password),
    )
    assert response.status_code == 200, response.text
    refresh = leak_guard.add(response.json()["refresh_token"])
    assert len(refresh) >= 32

    with database.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM refresh_tokens")).mappings().all()
    assert len(rows) == 1
    row = dict(rows[0])
    assert row["token_hash"] == hashlib.sha256(refresh.encode()).hexdigest()
    assert (row["subject"], row["service"], row["client_id"]) == ("alice", SERVICE, "docker")
    assert all(refresh not in str(v) for v in row.values())

    # `offline_token` other than "true" gives none.
    plain = client.get(
        "/token",
        params={"service": SERVICE, "offline_token": "false"},
        auth=("alice", password),
    )
    assert "refresh_token" not in plain.json()


def test_account_mismatch_is_400(client: TestClient, add_user: Callable[..., str]) -> None:
    password = add_user("alice")
    response = client.get(
        "/token", params={"service": SERVICE, "account": "bob"}, auth=("alice", password)
    )
    _assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("", "invalid_request"),
        ("service=", "invalid_request"),
        ("service=other", "invalid_request"),
        ("service=registry&service=registry", "invalid_request"),
        ("service=registry&scope=repository:Bad:pull", "invalid_scope"),
        ("service=registry&scope=repository:a", "invalid_scope"),
        ("service=registry&scope=%ff", "invalid_request"),
        ("service=registry%ff", "invalid_request"),
        ("service=registry&scope=repository%3Aa%3Apull%00", "invalid_request"),
    ],
)
def test_bad_queries_are_400(client: TestClient, query: str, error: str) -> None:
    response = client.get(f"/token?{query}")
    body = _assert_error(response, 400, error)
    if "%ff" in query:
        assert "UTF-8" in body["error_description"]


def test_too_many_scopes_is_400(client: TestClient) -> None:
    scopes = " ".join(f"repository:r{i}:pull" for i in range(101))
    _assert_error(
        client.get("/token", params={"service": SERVICE, "scope": scopes}), 400, "invalid_scope"
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Basic %%%not-base64"},
        _basic(b"no-colon-here"),
        _basic(b"\xff\xfe\xfd:password"),
        _basic(b"alice:\xff"),
        {"Authorization": "Basic"},
        {"Authorization": "Bearer abc.def.ghi"},
    ],
)
def test_bad_basic_credentials_are_400_json(client: TestClient, headers: dict[str, str]) -> None:
    response = client.get("/token", params={"service": SERVICE}, headers=headers)
    _assert_error(response, 400, "invalid_request")


def test_bad_basic_with_non_latin1_header_bytes(client: TestClient) -> None:
    response = client.get(
        "/token",
        params={"service": SERVICE},
        headers=[(b"Authorization", b"Basic \xc3\xa9\xff")],  # type: ignore[arg-type]
    )
    _assert_error(response, 400, "invalid_request")


def test_service_list_accepts_each_service(
    make_config: Callable[..., Config],
    start_client: StartClient,
    add_user: Callable[..., str],
) -> None:
    cfg = make_config({"token": {"service": ["registry-a", "registry-b"]}})
    password = add_user("alice")
    with start_client(cfg) as client:
        for service in ("registry-a", "registry-b"):
            response = client.get("/token", params={"service": service}, auth=("alice", password))
            assert response.status_code == 200
            token = response.json()["token"]
            assert jwt.decode(token, options={"verify_signature": False})["aud"] == service
        _assert_error(client.get("/token", params={"service": "registry"}), 400)


def test_rs256_configuration(
    tmp_path: Path,
    make_config: Callable[..., Config],
    start_client: StartClient,
    add_user: Callable[..., str],
) -> None:
    generate_key(tmp_path / "rsa-keys", "RS256")
    cfg = make_config({"token": {"keys_dir": "rsa-keys", "algorithm": "RS256"}})
    password = add_user("alice")
    with start_client(cfg) as client:
        token = client.get("/token", params={"service": SERVICE}, auth=("alice", password)).json()[
            "token"
        ]
        (jwk,) = client.get("/.well-known/jwks.json").json()["keys"]
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["RS256"], audience=SERVICE)


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_htpasswd_users_and_an_unavailable_file(
    tmp_path: Path,
    make_config: Callable[..., Config],
    start_client: StartClient,
    add_user: Callable[..., str],
    leak_guard: Any,
) -> None:
    htpasswd = tmp_path / "users.htpasswd"
    ht_password = leak_guard.add("ht-pw-31337")
    htpasswd.write_text(f"hank:{hash_password(ht_password, rounds=4)}\n")
    db_password = add_user("alice")
    cfg = make_config({"users": {"htpasswd": "users.htpasswd"}})
    assert cfg.users.htpasswd == htpasswd
    with start_client(cfg) as client:
        ok = client.get("/token", params={"service": SERVICE}, auth=("hank", ht_password))
        assert ok.status_code == 200
        assert jwt.decode(ok.json()["token"], options={"verify_signature": False})["sub"] == "hank"
        assert (
            client.get(
                "/token", params={"service": SERVICE}, auth=("alice", db_password)
            ).status_code
            == 200
        )

        htpasswd.write_bytes(b"h\xe9nk:" + hash_password("x-pw-1", rounds=4).encode() + b"\n")
        bad = client.get("/token", params={"service": SERVICE}, auth=("hank", ht_password))
        _assert_error(bad, 503, "temporarily_unavailable")
        assert bad.headers["retry-after"]

        htpasswd.unlink()
        gone = client.get("/token", params={"service": SERVICE}, auth=("alice", db_password))
        _assert_error(gone, 503, "temporarily_unavailable")
        # Anonymous requests do not need the backends.
        assert client.get("/token", params={"service": SERVICE}).status_code == 200


def test_key_rotation_through_the_config(
    keys_dir: Path,
    make_config: Callable[..., Config],
    start_client: StartClient,
    add_user: Callable[..., str],
) -> None:
    (old_cert,) = keys_dir.glob("*.crt")
    password = add_user("alice")

    def token_and_jwks(cfg: Config) -> tuple[str, dict[str, Any]]:
        with start_client(cfg) as client:
            body = client.get("/token", params={"service": SERVICE}, auth=("alice", password))
            return body.json()["token"], client.get("/.well-known/jwks.json").json()

    old_token, _ = token_and_jwks(make_config())
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    generate_key(keys_dir)

    new_token, jwks = token_and_jwks(make_config())
    new_kid = jwt.get_unverified_header(new_token)["kid"]
    assert new_kid != old_kid
    assert {k["kid"] for k in jwks["keys"]} == {old_kid, new_kid}
    # A token signed before the rotation still verifies with the published set.
    (old_jwk,) = (k for k in jwks["keys"] if k["kid"] == old_kid)
    assert jwt.decode(old_token, jwt.PyJWK(old_jwk).key, algorithms=["ES256"], audience=SERVICE)

    pinned, _ = token_and_jwks(make_config({"token": {"signing_key": old_cert.stem}}))
    assert jwt.get_unverified_header(pinned)["kid"] == old_kid

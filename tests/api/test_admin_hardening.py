"""The admin API as an attacker tries it: CI tokens, stale admin tokens, names, types, the trail."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from authcore.identity import ScopeLimit
from tests.conftest import FAST_ROUNDS, LeakGuard
from tokenserver.config import Config
from tokenserver.passwords import hash_password
from tokenserver.store.audit import AuditStore
from tokenserver.store.ci_tokens import CITokenStore
from tokenserver.store.db import Database

SERVICE = "registry"
StartClient = Callable[[Config], Any]


@pytest.fixture
def admin(add_user: Callable[..., str]) -> tuple[str, str]:
    return "root", add_user("root", groups=("admin",))


def _status(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json() if response.content else {}
    return body


def _bearer(client: TestClient, auth: tuple[str, str], scope: str) -> dict[str, str]:
    response = client.get("/token", params={"service": SERVICE, "scope": scope}, auth=auth)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def _ci_token(client: TestClient, admin: tuple[str, str], name: str, *scopes: str) -> Any:
    return client.post(
        "/admin/v1/ci-tokens",
        json={"name": name, "scopes": list(scopes), "ttl": 3600},
        auth=admin,
    )


# -- CI tokens never administer ---------------------------------------------


@pytest.mark.parametrize("scope", ["admin:api:*", "admin:*:*", "admin:api:pull", "admin:a*:push"])
def test_a_ci_token_with_an_admin_scope_is_refused(
    client: TestClient, admin: tuple[str, str], scope: str
) -> None:
    body = _status(_ci_token(client, admin, "ci-bad", "repository:a/b:pull", scope), 400)
    assert "admin" in body["error_description"]
    assert client.get("/admin/v1/ci-tokens", auth=admin).json() == []


def test_token_never_grants_admin_to_a_ci_identity(
    make_config: Callable[..., Config],
    start_client: StartClient,
    database: Database,
    admin: tuple[str, str],
    decode_token: Callable[[str], dict[str, Any]],
    leak_guard: LeakGuard,
) -> None:
    # A token stored with an admin scope (by an older version, or straight into
    # the database) and rules that grant everything to everyone.
    now = dt.datetime.now(dt.UTC)
    _info, secret = CITokenStore(database).create(
        "ci-old",
        ScopeLimit.parse(["admin:*:*", "repository:a/*:*"]),
        now + dt.timedelta(hours=1),
        now,
    )
    leak_guard.add(secret)
    config = make_config({"acl": [{"match": {}, "actions": ["*"]}]})
    with start_client(config) as client:
        answer = client.get(
            "/token",
            params={"service": SERVICE, "scope": ["admin:api:*", "repository:a/b:pull"]},
            auth=("ci-old", secret),
        )
        assert answer.status_code == 200, answer.text
        granted = decode_token(answer.json()["token"])["access"]
        assert granted == [{"type": "repository", "name": "a/b", "actions": ["pull"]}]
        bearer = {"Authorization": f"Bearer {answer.json()['token']}"}
        created = client.post(
            "/admin/v1/users", json={"name": "evil", "password": "pw-evil-1"}, headers=bearer
        )
        assert created.status_code == 403
        assert client.get("/admin/v1/users/evil", auth=admin).status_code == 404


# -- admin Bearer tokens are checked on every call -----------------------------


def test_an_admin_token_dies_with_its_admin(
    client: TestClient, admin: tuple[str, str], add_user: Callable[..., str]
) -> None:
    other = ("ops", add_user("ops", groups=("admin",)))
    token = _bearer(client, admin, "admin:api:*")

    def create(name: str) -> int:
        body = {"name": name, "password": "pw-created-1"}
        return client.post("/admin/v1/users", json=body, headers=token).status_code

    assert create("made-1") == 201
    client.put("/admin/v1/users/root/disabled", json={"disabled": True}, auth=other)
    assert create("made-2") == 401
    client.put("/admin/v1/users/root/disabled", json={"disabled": False}, auth=other)
    assert create("made-3") == 201
    client.put("/admin/v1/users/root/groups", json={"groups": ["dev"]}, auth=other)
    assert create("made-4") == 403
    client.put("/admin/v1/users/root/groups", json={"groups": ["admin"]}, auth=other)
    assert create("made-5") == 201
    assert client.delete("/admin/v1/users/root", auth=other).status_code == 204
    assert create("made-6") == 401
    names = {u["name"] for u in client.get("/admin/v1/users", auth=other).json()}
    assert names == {"ops", "made-1", "made-3", "made-5"}


# -- one account, one name ---------------------------------------------------


def test_names_are_one_account_whatever_the_spelling(
    make_config: Callable[..., Config],
    start_client: StartClient,
    admin: tuple[str, str],
    add_user: Callable[..., str],
    tmp_path: Path,
) -> None:
    htpasswd = tmp_path / "users.htpasswd"
    htpasswd.write_text(f"hana:{hash_password('hana-pw-1', rounds=FAST_ROUNDS)}\n")
    add_user("alice")
    with start_client(make_config({"users": {"htpasswd": str(htpasswd)}})) as client:
        # The last one is written in full-width letters.
        for variant in ("Alice", "ALICE", "\uff41\uff4c\uff49\uff43\uff45"):
            body = {"name": variant, "password": "pw-variant-1"}
            _status(client.post("/admin/v1/users", json=body, auth=admin), 409)
        # A CI token named like a user would issue tokens in that user's name.
        for name in ("alice", "Alice", "hana", "root"):
            _status(_ci_token(client, admin, name, "repository:x/*:pull"), 409)
        _status(_ci_token(client, admin, "deployer", "repository:x/*:pull"), 201)
        _status(_ci_token(client, admin, "Deployer", "repository:x/*:pull"), 409)
        body = {"name": "DEPLOYER", "password": "pw-deployer-1"}
        _status(client.post("/admin/v1/users", json=body, auth=admin), 409)
        assert client.delete("/admin/v1/ci-tokens/deployer", auth=admin).status_code == 204
        _status(client.post("/admin/v1/users", json=body, auth=admin), 201)


# -- the schema and the behaviour agree -------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        (
            "POST",
            "/admin/v1/ci-tokens",
            {"name": "c", "scopes": ["repository:a/b:pull"], "ttl": True},
        ),
        (
            "POST",
            "/admin/v1/ci-tokens",
            {"name": "c", "scopes": ["repository:a/b:pull"], "ttl": "60"},
        ),
        (
            "POST",
            "/admin/v1/ci-tokens",
            {"name": "c", "scopes": ["repository:a/b:pull"], "ttl": 1.5},
        ),
        ("POST", "/admin/v1/ci-tokens", {"name": 7, "scopes": ["repository:a/b:pull"], "ttl": 60}),
        ("PUT", "/admin/v1/users/root/disabled", {"disabled": "yes"}),
        ("PUT", "/admin/v1/users/root/disabled", {"disabled": 1}),
        ("PUT", "/admin/v1/users/root/groups", {"groups": "admin"}),
        ("POST", "/admin/v1/users", {"name": "e", "password": "x" * 73}),
        # 40 characters, 80 bytes: within the schema's character count, over bcrypt's 72 bytes.
        ("POST", "/admin/v1/users", {"name": "e", "password": "é" * 40}),
        ("PUT", "/admin/v1/users/root/password", {"password": "x" * 73}),
    ],
)
def test_loose_types_and_long_passwords_are_refused(
    client: TestClient, admin: tuple[str, str], method: str, path: str, body: dict[str, Any]
) -> None:
    _status(client.request(method, path, json=body, auth=admin), 400)
    assert client.get("/admin/v1/ci-tokens", auth=admin).json() == []
    assert client.get("/admin/v1/users/root", auth=admin).json() == {
        "name": "root",
        "groups": ["admin"],
        "disabled": False,
    }


def test_the_schema_says_what_the_api_refuses(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["UserCreate"]["properties"]["password"]["maxLength"] == 72
    assert schemas["PasswordIn"]["properties"]["password"]["maxLength"] == 72
    assert schemas["CITokenCreate"]["properties"]["ttl"]["type"] == "integer"


def test_a_body_over_the_limit_is_413_and_closes_the_connection(
    client: TestClient, admin: tuple[str, str]
) -> None:
    big = json.dumps({"name": "big", "password": "pw-big-1", "groups": ["g" * 200] * 400})
    assert len(big) > 64 * 1024
    answer = client.post(
        "/admin/v1/users", content=big, headers={"Content-Type": "application/json"}, auth=admin
    )
    assert answer.status_code == 413 and answer.headers["connection"] == "close"

    def chunks() -> Any:
        yield big.encode()

    chunked = client.post(
        "/admin/v1/users",
        content=chunks(),
        headers={"Content-Type": "application/json"},
        auth=admin,
    )
    assert chunked.status_code == 413
    assert client.get("/admin/v1/users/big", auth=admin).status_code == 404


def test_an_anonymous_body_is_refused_before_it_is_read(client: TestClient) -> None:
    answer = client.post(
        "/admin/v1/users",
        content=b"{" * 100_000,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 401 and answer.headers["connection"] == "close"


# -- every administrative act leaves a row ------------------------------------------


def _rows(database: Database, **filters: Any) -> list[dict[str, Any]]:
    return [vars(r) for r in AuditStore(database).query(limit=1000, **filters)]


def test_every_act_and_every_refusal_is_audited(
    client: TestClient,
    admin: tuple[str, str],
    add_user: Callable[..., str],
    database: Database,
    leak_guard: LeakGuard,
) -> None:
    alice = ("alice", add_user("alice"))
    client.get("/token", params={"service": SERVICE, "offline_token": "true"}, auth=alice)
    password = leak_guard.add("pw-dana-first")
    acts = [
        ("POST", "/admin/v1/users", {"name": "dana", "password": password}, 201),
        ("PUT", "/admin/v1/users/dana/password", {"password": leak_guard.add("pw-dana-2")}, 204),
        ("PUT", "/admin/v1/users/dana/groups", {"groups": ["qa"]}, 200),
        ("PUT", "/admin/v1/users/dana/disabled", {"disabled": True}, 200),
        ("PUT", "/admin/v1/users/dana/disabled", {"disabled": False}, 200),
        ("DELETE", "/admin/v1/users/dana", None, 204),
        ("DELETE", "/admin/v1/users/dana", None, 404),
        ("POST", "/admin/v1/users", {"name": "alice", "password": "pw-alice-x"}, 409),
        (
            "POST",
            "/admin/v1/ci-tokens",
            {"name": "ci-1", "scopes": ["repository:a/b:pull"], "ttl": 60},
            201,
        ),
        ("DELETE", "/admin/v1/ci-tokens/ci-1", None, 204),
        ("DELETE", "/admin/v1/refresh-tokens?user=alice", None, 200),
        ("DELETE", "/admin/v1/refresh-tokens/999", None, 404),
    ]
    for method, path, body, status in acts:
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        answer = client.request(method, path, auth=admin, **kwargs)
        assert answer.status_code == status, (path, answer.text)
        if answer.status_code == 201 and "secret" in answer.json():
            leak_guard.add(answer.json()["secret"])
    # Refusals: no credentials, a wrong password, a non-admin, a junk token.
    _status(client.get("/admin/v1/users"), 401)
    _status(client.delete("/admin/v1/users/alice", auth=("root", "not-it")), 401)
    _status(client.post("/admin/v1/users", json={"name": "x", "password": "p"}, auth=alice), 403)
    _status(client.get("/admin/v1/audit", headers={"Authorization": "Bearer junk"}), 401)

    client.app.state.services.audit.flush()  # type: ignore[attr-defined]
    acted = [
        (r["action"], r["target"], r["outcome"], r["subject"], r["via"])
        for r in reversed(_rows(database))
        if r["action"] != "token"
    ]
    assert acted == [
        ("user.create", "dana", "ok", "root", "basic"),
        ("user.password", "dana", "ok", "root", "basic"),
        ("user.groups", "dana", "ok", "root", "basic"),
        ("user.disable", "dana", "ok", "root", "basic"),
        ("user.enable", "dana", "ok", "root", "basic"),
        ("user.delete", "dana", "ok", "root", "basic"),
        ("user.delete", "dana", "not_found", "root", "basic"),
        ("user.create", "alice", "conflict", "root", "basic"),
        ("ci_token.create", "ci-1", "ok", "root", "basic"),
        ("ci_token.revoke", "ci-1", "ok", "root", "basic"),
        ("refresh_token.revoke", "alice", "ok", "root", "basic"),
        ("refresh_token.revoke", "#999", "not_found", "root", "basic"),
        ("user.list", "", "bad_credentials", "", "none"),
        ("user.delete", "alice", "bad_credentials", "root", "basic"),
        ("user.create", "", "forbidden", "alice", "basic"),
        ("audit.read", "", "bad_credentials", "", "bearer"),
    ]
    every = json.dumps(_rows(database), default=str)
    assert not leak_guard.found_in(every)

    # The API shows them beside the token requests, and filters by action.
    listed = client.get("/admin/v1/audit", params={"action": "user.delete"}, auth=admin).json()
    assert [(r["target"], r["outcome"]) for r in listed] == [
        ("alice", "bad_credentials"),
        ("dana", "not_found"),
        ("dana", "ok"),
    ]
    tokens = client.get("/admin/v1/audit", params={"action": "token"}, auth=admin).json()
    assert tokens and all(r["service"] == SERVICE for r in tokens)
    _status(client.get("/admin/v1/audit", params={"action": "Robert'); DROP"}, auth=admin), 400)

"""The admin API: every endpoint, who gets in, and the errors."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from tests.conftest import FakeClock, LeakGuard
from tokenserver.jws import CompactSigner
from tokenserver.passwords import hash_password, verify_password
from tokenserver.store.db import Database
from tokenserver.store.refresh_tokens import RefreshTokenStore
from tokenserver.store.users import UserStore

SERVICE = "registry"


@pytest.fixture
def refresh_store(database: Database) -> RefreshTokenStore:
    return RefreshTokenStore(database)


@pytest.fixture
def admin(add_user: Callable[..., str]) -> tuple[str, str]:
    return "root", add_user("root", groups=("admin", "ops"))


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] and body["error_description"]
    return body


ENDPOINTS = [
    ("GET", "/admin/v1/users", None),
    ("POST", "/admin/v1/users", {"name": "x", "password": "pw"}),
    ("GET", "/admin/v1/users/x", None),
    ("PUT", "/admin/v1/users/x/password", {"password": "pw"}),
    ("PUT", "/admin/v1/users/x/groups", {"groups": []}),
    ("PUT", "/admin/v1/users/x/disabled", {"disabled": True}),
    ("DELETE", "/admin/v1/users/x", None),
    ("GET", "/admin/v1/ci-tokens", None),
    ("POST", "/admin/v1/ci-tokens", {"name": "c", "scopes": ["repository:a/b:pull"], "ttl": 60}),
    ("DELETE", "/admin/v1/ci-tokens/c", None),
    ("GET", "/admin/v1/refresh-tokens", None),
    ("DELETE", "/admin/v1/refresh-tokens?user=x", None),
    ("DELETE", "/admin/v1/refresh-tokens/1", None),
    ("GET", "/admin/v1/ui-sessions", None),
    ("DELETE", "/admin/v1/ui-sessions?user=x", None),
    ("DELETE", "/admin/v1/ui-sessions/1", None),
    ("GET", "/admin/v1/audit", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_everyone_but_admins_is_refused(
    client: TestClient,
    add_user: Callable[..., str],
    method: str,
    path: str,
    body: Any,
) -> None:
    alice = ("alice", add_user("alice", groups=("dev",)))
    root_pw = add_user("root", groups=("admin",))
    kwargs: dict[str, Any] = {} if body is None else {"json": body}
    no_creds = _error(client.request(method, path, **kwargs), 401)
    assert no_creds["error"] == "unauthorized"
    challenge = client.request(method, path, **kwargs).headers["www-authenticate"]
    assert challenge.startswith("Basic realm=") and "Bearer realm=" in challenge
    _error(client.request(method, path, auth=("root", root_pw + "x"), **kwargs), 401)
    _error(client.request(method, path, auth=alice, **kwargs), 403)
    _error(client.request(method, path, headers={"Authorization": "Digest x"}, **kwargs), 401)
    _error(client.request(method, path, headers={"Authorization": "Bearer junk"}, **kwargs), 401)


def test_users_lifecycle(
    client: TestClient, admin: tuple[str, str], users: UserStore, leak_guard: LeakGuard
) -> None:
    password = leak_guard.add("first-password")
    created = client.post(
        "/admin/v1/users",
        json={"name": "dana", "password": password, "groups": ["dev", "ops"]},
        auth=admin,
    )
    assert created.status_code == 201, created.text
    assert created.json() == {"name": "dana", "groups": ["dev", "ops"], "disabled": False}
    assert password not in created.text
    assert client.get("/token", params={"service": SERVICE}, auth=("dana", password)).is_success

    names = [u["name"] for u in client.get("/admin/v1/users", auth=admin).json()]
    assert names == ["dana", "root"]
    assert client.get("/admin/v1/users/dana", auth=admin).json()["groups"] == ["dev", "ops"]
    _error(client.get("/admin/v1/users/nobody", auth=admin), 404)
    _error(client.post("/admin/v1/users", json={"name": "dana", "password": "p"}, auth=admin), 409)
    _error(client.post("/admin/v1/users", json={"name": "a:b", "password": "p"}, auth=admin), 400)
    _error(
        client.post("/admin/v1/users", json={"name": "e", "password": "x" * 73}, auth=admin), 400
    )
    _error(client.post("/admin/v1/users", json={"name": "e"}, auth=admin), 400)

    second = leak_guard.add("second-password")
    response = client.put("/admin/v1/users/dana/password", json={"password": second}, auth=admin)
    assert response.status_code == 204
    info = users.get("dana")
    assert info is not None and verify_password(second, info.password_hash)
    _error(client.put("/admin/v1/users/nobody/password", json={"password": "p"}, auth=admin), 404)

    groups = client.put("/admin/v1/users/dana/groups", json={"groups": ["qa"]}, auth=admin)
    assert groups.json()["groups"] == ["qa"]
    _error(client.put("/admin/v1/users/dana/groups", json={"groups": ["a b"]}, auth=admin), 400)

    disabled = client.put("/admin/v1/users/dana/disabled", json={"disabled": True}, auth=admin)
    assert disabled.json()["disabled"] is True
    assert (
        client.get("/token", params={"service": SERVICE}, auth=("dana", second)).status_code == 401
    )
    client.put("/admin/v1/users/dana/disabled", json={"disabled": False}, auth=admin)
    assert client.get("/token", params={"service": SERVICE}, auth=("dana", second)).is_success

    assert client.delete("/admin/v1/users/dana", auth=admin).status_code == 204
    _error(client.delete("/admin/v1/users/dana", auth=admin), 404)
    assert users.get("dana") is None


def test_refresh_tokens_list_and_revoke(
    client: TestClient,
    admin: tuple[str, str],
    add_user: Callable[..., str],
    refresh_store: RefreshTokenStore,
) -> None:
    alice = ("alice", add_user("alice"))
    for _ in range(2):
        response = client.get(
            "/token", params={"service": SERVICE, "offline_token": "true"}, auth=alice
        )
        assert "refresh_token" in response.json()
    listed = client.get("/admin/v1/refresh-tokens", params={"user": "alice"}, auth=admin).json()
    assert [t["subject"] for t in listed] == ["alice", "alice"]
    assert all("token" not in key for t in listed for key in t if key != "id")
    first = listed[0]["id"]
    assert client.delete(f"/admin/v1/refresh-tokens/{first}", auth=admin).status_code == 204
    _error(client.delete(f"/admin/v1/refresh-tokens/{first}", auth=admin), 404)
    revoked = client.delete("/admin/v1/refresh-tokens", params={"user": "alice"}, auth=admin)
    assert revoked.json() == {"revoked": 1}
    assert all(t.revoked_at is not None for t in refresh_store.list("alice"))
    _error(client.delete("/admin/v1/refresh-tokens/0", auth=admin), 400)
    _error(client.delete("/admin/v1/refresh-tokens", auth=admin), 400)


def test_password_change_revokes_refresh_tokens(
    client: TestClient,
    admin: tuple[str, str],
    add_user: Callable[..., str],
    refresh_store: RefreshTokenStore,
) -> None:
    alice = ("alice", add_user("alice"))
    client.get("/token", params={"service": SERVICE, "offline_token": "true"}, auth=alice)
    client.put("/admin/v1/users/alice/password", json={"password": "new-pw-1"}, auth=admin)
    assert [t.revoked_at is not None for t in refresh_store.list("alice")] == [True]


def test_admin_token_from_our_issuer(
    client: TestClient,
    admin: tuple[str, str],
    add_user: Callable[..., str],
    clock: FakeClock,
) -> None:
    def bearer(auth: tuple[str, str], scope: str) -> dict[str, str]:
        response = client.get("/token", params={"service": SERVICE, "scope": scope}, auth=auth)
        return {"Authorization": f"Bearer {response.json()['token']}"}

    as_admin = bearer(admin, "admin:api:*")
    assert client.get("/admin/v1/users", headers=as_admin).status_code == 200
    # A token without the admin scope, even an admin's, is not enough.
    _error(client.get("/admin/v1/users", headers=bearer(admin, "repository:x/y:pull")), 403)
    # A non-admin cannot get the scope granted in the first place.
    alice = ("alice", add_user("alice"))
    _error(client.get("/admin/v1/users", headers=bearer(alice, "admin:api:*")), 403)
    clock.advance(3600)
    _error(client.get("/admin/v1/users", headers=as_admin), 401)


def test_admin_tokens_with_unfit_alg_or_times_that_are_no_numbers_are_refused(
    client: TestClient, admin: tuple[str, str]
) -> None:
    """Signed by our own key, so only the alg and the times are wrong: each is a 401."""
    got = client.get("/token", params={"service": SERVICE, "scope": "admin:api:*"}, auth=admin)
    claims = jwt.decode(got.json()["token"], options={"verify_signature": False})
    signing = client.app.state.services.keys.signing  # type: ignore[attr-defined]
    signer = CompactSigner(signing.private, signing.alg, {"typ": "JWT", "kid": signing.kid})

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    assert client.get("/admin/v1/users", headers=bearer(signer.sign(claims))).status_code == 200
    for name in ("exp", "nbf"):
        for value in (float("nan"), float("inf"), True, str(claims["exp"]), 10**400, None):
            forged = signer.sign(claims | {name: value})
            _error(client.get("/admin/v1/users", headers=bearer(forged)), 401)
    # RS256 naming our EC key (the signature is any bytes: the alg is refused first).
    head, body, _ = signer.sign(claims).split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=="))
    relabelled = base64.urlsafe_b64encode(json.dumps(header | {"alg": "RS256"}).encode())
    forged = f"{relabelled.rstrip(b'=').decode()}.{body}.{'A' * 342}"
    _error(client.get("/admin/v1/users", headers=bearer(forged)), 401)


def test_ldap_or_htpasswd_admins_count_too(
    make_config: Callable[..., Any],
    start_client: Callable[..., Any],
    tmp_path: Any,
    add_user: Callable[..., str],
) -> None:
    # The admin group from any backend: here the database user has it, the
    # htpasswd one (no groups there) does not.
    htpasswd = tmp_path / "users.htpasswd"
    htpasswd.write_text(f"hana:{hash_password('hana-pw', rounds=4)}\n")
    root = ("root", add_user("root", groups=("admin",)))
    with start_client(make_config({"users": {"htpasswd": str(htpasswd)}})) as client:
        assert client.get("/admin/v1/users", auth=root).status_code == 200
        _error(client.get("/admin/v1/users", auth=("hana", "hana-pw")), 403)


def test_audit_endpoint_filters(
    client: TestClient, admin: tuple[str, str], add_user: Callable[..., str], clock: FakeClock
) -> None:
    alice = ("alice", add_user("alice"))
    client.get(
        "/token", params={"service": SERVICE, "scope": "repository:alice/a:pull"}, auth=alice
    )
    client.get("/token", params={"service": SERVICE}, auth=("alice", "wrong"))
    rows = client.get("/admin/v1/audit", params={"subject": "alice"}, auth=admin).json()
    assert [r["outcome"] for r in rows] == ["bad_credentials", "granted"]
    only = client.get("/admin/v1/audit", params={"outcome": "granted", "subject": "alice"},
                      auth=admin).json()  # fmt: skip
    assert len(only) == 1 and only[0]["granted"] == "repository:alice/a:pull"
    later = (clock.now + dt.timedelta(minutes=1)).isoformat()
    assert client.get("/admin/v1/audit", params={"since": later}, auth=admin).json() == []
    _error(client.get("/admin/v1/audit", params={"since": "2026-01-01T00:00:00"}, auth=admin), 400)
    _error(client.get("/admin/v1/audit", params={"outcome": "maybe"}, auth=admin), 400)
    _error(client.get("/admin/v1/audit", params={"limit": 0}, auth=admin), 400)


def test_admin_api_is_in_the_openapi_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    names = {"x": "{name}", "c": "{name}", "1": "{token_id}"}
    for method, path, _ in ENDPOINTS:
        parts = path.split("?")[0].split("/")
        template = "/".join(names.get(p, p) if i > 3 else p for i, p in enumerate(parts))
        template = template.replace("ui-sessions/{token_id}", "ui-sessions/{session_id}")
        assert method.lower() in paths[template], (method, template)


def test_framework_errors_share_the_json_shape(client: TestClient, admin: tuple[str, str]) -> None:
    assert _error(client.patch("/admin/v1/users", auth=admin), 405)["error"] == (
        "method_not_allowed"
    )
    assert "GET" in client.patch("/admin/v1/users", auth=admin).headers["allow"]
    assert _error(client.get("/admin/v1/nope", auth=admin), 404)["error"] == "not_found"
    assert _error(client.put("/token"), 405)["error"] == "method_not_allowed"
    raw = {"Content-Type": "application/json"}
    bad = client.post("/admin/v1/users", content=b"\x80", headers=raw, auth=admin)
    assert _error(bad, 400)["error"] == "invalid_request"
    # Without credentials, a broken body still only says that credentials are needed.
    assert _error(client.post("/admin/v1/users", content=b"{", headers=raw), 401)
    assert _error(client.post("/admin/v1/users", content=b"\x80", headers=raw), 401)


def test_the_schema_documents_our_error_answers(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    create = schema["paths"]["/admin/v1/users"]["post"]["responses"]
    assert {"400", "401", "403", "409"} <= set(create) and "422" not in create
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    error = schema["components"]["schemas"]["ErrorBody"]
    assert set(error["required"]) == {"error", "error_description", "details"}

"""CI tokens: create, use, narrowing, expiry, revocation; only the hash is stored."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import FakeClock, LeakGuard
from tests.support.tokenserver import TokenServer
from tokenserver.config import Config
from tokenserver.store.db import Database

SERVICE = "registry"
StartClient = Callable[[Config], AbstractContextManager[TestClient]]


@pytest.fixture
def admin(add_user: Callable[..., str]) -> tuple[str, str]:
    return "root", add_user("root", groups=("admin",))


def create_token(
    client: TestClient,
    admin: tuple[str, str],
    leak_guard: LeakGuard,
    name: str = "ci-app",
    scopes: tuple[str, ...] = ("repository:team/app:pull,push",),
    ttl: int = 30 * 86400,
    **extra: Any,
) -> str:
    response = client.post(
        "/admin/v1/ci-tokens",
        json={"name": name, "scopes": list(scopes), "ttl": ttl, **extra},
        auth=admin,
    )
    assert response.status_code == 201, response.text
    secret: str = response.json()["secret"]
    return leak_guard.add(secret)


def token_for(client: TestClient, auth: tuple[str, str], *scopes: str, **params: str) -> Any:
    return client.get(
        "/token", params={"service": SERVICE, "scope": list(scopes), **params}, auth=auth
    )


def access(response: Any, decode: Callable[[str], dict[str, Any]]) -> dict[str, list[str]]:
    assert response.status_code == 200, response.text
    claims = decode(response.json()["token"])
    return {f"{a['type']}:{a['name']}": a["actions"] for a in claims["access"]}


def test_create_use_and_narrow(
    client: TestClient,
    admin: tuple[str, str],
    leak_guard: LeakGuard,
    decode_token: Callable[[str], dict[str, Any]],
) -> None:
    secret = create_token(client, admin, leak_guard, scopes=("repository:team/*:pull",
                                                             "repository:team/app:push"))  # fmt: skip
    assert secret.startswith("tsci_") and len(secret) >= 5 + 43
    got = token_for(
        client,
        ("ci-app", secret),
        "repository:team/app:pull,push,delete",
        "repository:team/lib:pull,push",
        "repository:other/x:pull",
        "registry:catalog:*",
    )
    assert access(got, decode_token) == {
        "repository:team/app": ["pull", "push"],
        "repository:team/lib": ["pull"],
    }
    assert decode_token(got.json()["token"])["sub"] == "ci-app"


def test_policy_still_applies_to_ci_tokens(
    make_config: Callable[..., Config],
    start_client: StartClient,
    add_user: Callable[..., str],
    leak_guard: LeakGuard,
    decode_token: Callable[[str], dict[str, Any]],
) -> None:
    rules = [
        {"match": {"labels": {"groups": "admin"}}, "actions": ["*"]},
        {"match": {"labels": {"kind": "ci"}, "name": "team/*"}, "actions": ["pull"]},
    ]
    root = ("root", add_user("root", groups=("admin",)))
    with start_client(make_config({"acl": rules})) as client:
        secret = create_token(client, root, leak_guard, scopes=("repository:team/*:pull,push",))
        got = token_for(client, ("ci-app", secret), "repository:team/app:pull,push")
    assert got.status_code == 200
    payload = jwt.decode(got.json()["token"], options={"verify_signature": False})
    assert payload["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]


def test_wrong_name_wrong_secret_expired_and_revoked_fail_like_bad_passwords(
    client: TestClient,
    admin: tuple[str, str],
    leak_guard: LeakGuard,
    clock: FakeClock,
) -> None:
    secret = create_token(client, admin, leak_guard, ttl=3600)
    scope = "repository:team/app:pull"
    assert token_for(client, ("ci-app", secret), scope).status_code == 200
    for auth in (("ci-other", secret), ("ci-app", secret[:-1] + "x"), ("ci-app", "tsci_short")):
        response = token_for(client, auth, scope)
        assert response.status_code == 401 and response.json()["error"] == "unauthorized"

    clock.advance(3601)
    assert token_for(client, ("ci-app", secret), scope).status_code == 401
    clock.advance(-3601)
    assert token_for(client, ("ci-app", secret), scope).status_code == 200
    assert client.delete("/admin/v1/ci-tokens/ci-app", auth=admin).status_code == 204
    assert token_for(client, ("ci-app", secret), scope).status_code == 401
    assert client.delete("/admin/v1/ci-tokens/ci-app", auth=admin).status_code == 404


def test_only_the_hash_is_stored_and_use_is_recorded(
    client: TestClient,
    admin: tuple[str, str],
    leak_guard: LeakGuard,
    database: Database,
    clock: FakeClock,
) -> None:
    secret = create_token(client, admin, leak_guard, description="deploys team/app")
    assert token_for(client, ("ci-app", secret), "repository:team/app:pull").status_code == 200
    with database.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM ci_tokens")).mappings().all()
        dump = repr([dict(r) for r in rows])
        for table in ("audit_events", "refresh_tokens"):
            dump += repr(conn.execute(text(f"SELECT * FROM {table}")).all())  # noqa: S608
    assert secret not in dump and secret[5:] not in dump
    assert len(rows) == 1 and len(rows[0]["secret_hash"]) == 64

    listed = client.get("/admin/v1/ci-tokens", auth=admin).json()
    assert len(listed) == 1
    (entry,) = listed
    assert "secret" not in entry and secret not in repr(listed)
    assert entry["last_used_ip"] == "testclient"
    assert entry["last_used_at"] is not None and entry["state"] == "live"
    assert entry["created_by"] == "root" and entry["description"] == "deploys team/app"


def test_docker_login_with_a_ci_token_gets_no_refresh_token(
    client: TestClient, admin: tuple[str, str], leak_guard: LeakGuard
) -> None:
    secret = create_token(client, admin, leak_guard)
    response = client.get(
        "/token",
        params={"service": SERVICE, "account": "ci-app", "offline_token": "true",
                "client_id": "docker"},
        auth=("ci-app", secret),
    )  # fmt: skip
    assert response.status_code == 200
    assert "refresh_token" not in response.json()


def test_create_refusals(client: TestClient, admin: tuple[str, str], leak_guard: LeakGuard) -> None:
    create_token(client, admin, leak_guard)
    cases: list[tuple[dict[str, Any], int]] = [
        ({"name": "ci-app", "scopes": ["repository:a/b:pull"], "ttl": 60}, 409),
        ({"name": "x", "scopes": ["repository:a/b:pull"], "ttl": 10**9}, 400),
        ({"name": "x", "scopes": ["nonsense"], "ttl": 60}, 400),
        ({"name": "x", "scopes": [], "ttl": 60}, 400),
        ({"name": "x", "scopes": ["repository:a/b:pull"]}, 400),
        ({"name": "x y", "scopes": ["repository:a/b:pull"], "ttl": 60}, 400),
        ({"name": "x", "scopes": ["repository:a/b:pull"], "ttl": 60, "extra": 1}, 400),
    ]
    for body, status in cases:
        response = client.post("/admin/v1/ci-tokens", json=body, auth=admin)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]
    # After revoking, the name can be used again (a rotated secret).
    assert client.delete("/admin/v1/ci-tokens/ci-app", auth=admin).status_code == 204
    assert create_token(client, admin, leak_guard).startswith("tsci_")


@pytest.mark.peers
def test_a_live_name_refused_takes_as_long_as_an_unknown_or_revoked_one(
    tmp_path: Path, leak_guard: LeakGuard
) -> None:
    """Against a real server: the time of a refusal does not tell which names are live.

    Each refusal is one bcrypt check (at a cost that dwarfs the rest of a
    request), a right secret none. Before, a live name's wrong secret took a
    fiftieth of an unknown name's refusal. The bound is loose and the paths
    are sampled in turn, so the machine's noise falls on all of them.
    """
    ts = TokenServer(
        tmp_path,
        extra={
            "users": {"bcrypt_cost": 10},
            "throttle": {"account_failures": 1000, "address_failures": 1000},
        },
    )
    root = ("root", leak_guard.add("root-pw-timing"))
    ts.add_user(*root, "admin")
    with ts, httpx.Client(base_url=ts.url, timeout=30) as http:

        def create(name: str) -> str:
            body = {"name": name, "scopes": ["repository:team/*:pull"], "ttl": 3600}
            response = http.post("/admin/v1/ci-tokens", json=body, auth=root)
            assert response.status_code == 201, response.text
            return leak_guard.add(response.json()["secret"])

        live = create("ci-live")
        gone = create("ci-gone")
        assert http.delete("/admin/v1/ci-tokens/ci-gone", auth=root).status_code == 204
        wrong = live[:-1] + ("A" if live[-1] != "A" else "B")
        refusals = {
            "live name, wrong secret": ("ci-live", wrong),
            "unknown name": ("ci-nobody", wrong),
            "revoked name, its secret": ("ci-gone", gone),
            "user, wrong password": ("root", wrong),
        }
        paths = {**refusals, "right secret": ("ci-live", live)}
        times: dict[str, list[float]] = {path: [] for path in paths}
        order = list(paths)
        for round_ in range(6):
            for path in order[round_ % len(order) :] + order[: round_ % len(order)]:
                started = time.perf_counter()
                response = http.get("/token", params={"service": SERVICE}, auth=paths[path])
                elapsed = time.perf_counter() - started
                assert response.status_code == (200 if path == "right secret" else 401)
                if round_:  # the first round warms connections and caches
                    times[path].append(elapsed)
    medians = {path: statistics.median(times[path]) for path in paths}
    slowest = max(medians[path] for path in refusals)
    for path in refusals:
        assert medians[path] > slowest / 3, medians
    # The decoy is for refusals only: a right secret does not wait for it.
    assert medians["right secret"] < slowest / 3, medians

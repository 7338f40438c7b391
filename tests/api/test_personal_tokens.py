"""Personal access tokens: made for a person, used as them, narrowed, ended with them.

The identity a token proves is its person as their backend finds them now:
the grant is what was asked ∩ the token's scopes ∩ what the rules give the
person today. A password change, a disable, a delete (and a new account of
the name) end the person's tokens; a revoked or expired token proves nothing.
Hostile input answers 4xx and changes nothing stored.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import FakeClock, LeakGuard
from tokenserver.accounts import Accounts, UnknownAccount
from tokenserver.audit import Actor
from tokenserver.config import Config
from tokenserver.passwords import hash_password
from tokenserver.store.db import Database
from tokenserver.store.users import UserStore

SERVICE = "registry"
StartClient = Callable[[Config], AbstractContextManager[TestClient]]
ALICE_SCOPES = ("repository:alice/*:pull,push", "repository:team/*:pull")


@pytest.fixture
def people(add_user: Callable[..., str]) -> dict[str, tuple[str, str]]:
    """`root`, an admin, and `alice`, a developer: name and password of each."""
    return {
        "root": ("root", add_user("root", groups=("admin",))),
        "alice": ("alice", add_user("alice", groups=("dev",))),
    }


def make_token(
    client: TestClient,
    admin: tuple[str, str],
    leak_guard: LeakGuard,
    user: str = "alice",
    name: str = "laptop",
    scopes: tuple[str, ...] = ALICE_SCOPES,
    ttl: int = 7 * 86400,
) -> str:
    answer = client.post(
        "/admin/v1/personal-tokens",
        json={"user": user, "name": name, "scopes": list(scopes), "ttl": ttl},
        auth=admin,
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["owner"] == user and body["name"] == name and body["state"] == "live"
    secret: str = body["secret"]
    return leak_guard.add(secret)


def token_for(client: TestClient, auth: tuple[str, str], *scopes: str, **params: str) -> Any:
    return client.get(
        "/token", params={"service": SERVICE, "scope": list(scopes), **params}, auth=auth
    )


def granted(answer: Any, decode: Callable[[str], dict[str, Any]]) -> dict[str, list[str]]:
    assert answer.status_code == 200, answer.text
    claims = decode(answer.json()["token"])
    return {f"{a['type']}:{a['name']}": sorted(a["actions"]) for a in claims["access"]}


def stored(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row a refused change could touch, read straight from the tables."""
    with database.engine.connect() as conn:
        return {
            table: sorted(
                (tuple(row) for row in conn.execute(text(f"SELECT * FROM {table}"))),  # noqa: S608
                key=repr,
            )
            for table in ("personal_tokens", "users", "user_groups", "refresh_tokens")
        }


def accounts_of(client: TestClient) -> Accounts:
    service: Accounts = client.app.state.services.accounts  # type: ignore[attr-defined]
    return service


# -- made, used, narrowed ---------------------------------------------------------


def test_a_token_logs_its_person_in_narrowed_to_its_scopes_and_the_rules(
    client: TestClient,
    people: dict[str, tuple[str, str]],
    leak_guard: LeakGuard,
    decode_token: Callable[[str], dict[str, Any]],
    database: Database,
) -> None:
    secret = make_token(client, people["root"], leak_guard)
    assert secret.startswith("tspat_") and len(secret) == 6 + 43
    answer = token_for(
        client,
        ("alice", secret),
        "repository:alice/app:pull,push,delete",
        "repository:team/app:pull",
        "repository:bob/app:pull",
        "registry:catalog:*",
    )
    # The default rules give alice her own namespace only; the token cuts `delete`.
    assert granted(answer, decode_token) == {"repository:alice/app": ["pull", "push"]}
    assert decode_token(answer.json()["token"])["sub"] == "alice"
    client.app.state.services.audit.flush()  # type: ignore[attr-defined]
    with database.engine.connect() as conn:
        row = conn.execute(
            text("SELECT subject, kind, backend, detail FROM audit_events WHERE action='token'")
        ).one()
    assert tuple(row[:3]) == ("alice", "user", "database")
    assert json.loads(row[3]) == {"personal_token": "laptop"}


def test_the_grant_follows_the_persons_groups_now(
    make_config: Callable[..., Config],
    start_client: StartClient,
    add_user: Callable[..., str],
    leak_guard: LeakGuard,
    decode_token: Callable[[str], dict[str, Any]],
) -> None:
    rules = [
        {"match": {"labels": {"groups": "admin"}}, "actions": ["*"]},
        {"match": {"labels": {"groups": "dev"}, "name": "team/*"}, "actions": ["pull", "push"]},
    ]
    root = ("root", add_user("root", groups=("admin",)))
    add_user("alice", groups=("dev",))
    with start_client(make_config({"acl": rules})) as client:
        secret = make_token(client, root, leak_guard, scopes=("repository:team/*:pull",))
        scope = "repository:team/app:pull,push"
        assert granted(token_for(client, ("alice", secret), scope), decode_token) == {
            "repository:team/app": ["pull"]
        }
        answer = client.put("/admin/v1/users/alice/groups", json={"groups": []}, auth=root)
        assert answer.status_code == 200
        assert granted(token_for(client, ("alice", secret), scope), decode_token) == {}
        answer = client.put("/admin/v1/users/alice/groups", json={"groups": ["dev"]}, auth=root)
        assert granted(token_for(client, ("alice", secret), scope), decode_token) == {
            "repository:team/app": ["pull"]
        }


def test_only_the_hash_is_stored_and_use_is_recorded(
    client: TestClient,
    people: dict[str, tuple[str, str]],
    leak_guard: LeakGuard,
    database: Database,
) -> None:
    secret = make_token(client, people["root"], leak_guard)
    assert token_for(client, ("alice", secret), "repository:alice/a:pull").status_code == 200
    client.app.state.services.audit.flush()  # type: ignore[attr-defined]
    dump = repr(stored(database))
    with database.engine.connect() as conn:
        dump += repr(conn.execute(text("SELECT * FROM audit_events")).all())
    assert secret not in dump and secret[6:] not in dump
    (entry,) = client.get("/admin/v1/personal-tokens", auth=people["root"]).json()
    assert "secret" not in entry and secret not in repr(entry)
    assert entry["last_used_ip"] == "testclient" and entry["last_used_at"] is not None
    assert entry["created_by"] == "root" and entry["owner"] == "alice"
    assert entry["scopes"] == list(ALICE_SCOPES)


def test_docker_login_with_a_token_gets_no_refresh_token(
    client: TestClient, people: dict[str, tuple[str, str]], leak_guard: LeakGuard
) -> None:
    """A refresh token would outlive the personal token and reach past its scopes."""
    secret = make_token(client, people["root"], leak_guard)
    answer = token_for(
        client, ("alice", secret), account="alice", offline_token="true", client_id="docker"
    )
    assert answer.status_code == 200 and "refresh_token" not in answer.json()


def test_another_spelling_of_the_name_is_the_person_but_another_person_is_not(
    client: TestClient,
    people: dict[str, tuple[str, str]],
    leak_guard: LeakGuard,
    add_user: Callable[..., str],
    decode_token: Callable[[str], dict[str, Any]],
) -> None:
    add_user("bob")
    secret = make_token(client, people["root"], leak_guard)
    answer = token_for(client, ("ALICE", secret), "repository:alice/a:pull")
    assert decode_token(answer.json()["token"])["sub"] == "alice"
    for user in ("bob", "root", "nobody"):
        assert token_for(client, (user, secret), "repository:alice/a:pull").status_code == 401


def test_a_token_never_signs_in_to_the_web_page_nor_the_admin_api(
    client: TestClient, people: dict[str, tuple[str, str]], leak_guard: LeakGuard
) -> None:
    """Even the admin's own token: a session or an admin call would hold more than its scopes."""
    secret = make_token(
        client, people["root"], leak_guard, user="root", scopes=("repository:x/*:pull",)
    )
    assert client.get("/admin/v1/users", auth=("root", secret)).status_code == 403
    browser = TestClient(client.app, follow_redirects=False)
    login = browser.get("/ui/login")
    csrf = login.text.split('name="csrf" value="')[1].split('"')[0]
    answer = browser.post("/ui/login", data={"username": "root", "password": secret, "csrf": csrf})
    assert answer.status_code == 403 and "ts_session" not in browser.cookies


# -- ended -------------------------------------------------------------------------

ENDS = {
    "password": ("PUT", "/admin/v1/users/alice/password", {"password": "new-pw-1"}),
    "disable": ("PUT", "/admin/v1/users/alice/disabled", {"disabled": True}),
    "delete": ("DELETE", "/admin/v1/users/alice", None),
}


@pytest.mark.parametrize("change", list(ENDS))
def test_a_password_change_disable_or_delete_ends_the_persons_tokens_for_good(
    client: TestClient,
    people: dict[str, tuple[str, str]],
    leak_guard: LeakGuard,
    change: str,
) -> None:
    root = people["root"]
    secret = make_token(client, root, leak_guard)
    other = make_token(
        client, root, leak_guard, user="root", name="mine", scopes=("repository:x/*:pull",)
    )
    method, path, body = ENDS[change]
    answer = client.request(method, path, auth=root, **({} if body is None else {"json": body}))
    assert answer.is_success, answer.text
    assert token_for(client, ("alice", secret), "repository:alice/a:pull").status_code == 401
    # Restored (enabled, created again): the token stays ended.
    if change == "disable":
        client.put("/admin/v1/users/alice/disabled", json={"disabled": False}, auth=root)
    if change == "delete":
        user = {"name": "alice", "password": people["alice"][1], "groups": ["dev"]}
        assert client.post("/admin/v1/users", json=user, auth=root).status_code == 201
    assert token_for(client, ("alice", secret), "repository:alice/a:pull").status_code == 401
    listed = client.get("/admin/v1/personal-tokens", params={"user": "alice"}, auth=root).json()
    assert [t["state"] for t in listed] == ["revoked"]
    # Another person's token is untouched.
    assert token_for(client, ("root", other), "repository:x/a:pull").status_code == 200


def test_a_token_is_bound_to_the_account_not_the_name(
    client: TestClient,
    people: dict[str, tuple[str, str]],
    leak_guard: LeakGuard,
    users: UserStore,
) -> None:
    """Changed behind the accounts service's back (no revoke ran): still a stranger."""
    secret = make_token(client, people["root"], leak_guard)
    scope = "repository:alice/a:pull"
    users.set_password("alice", hash_password("another-pw-1", rounds=4))
    assert token_for(client, ("alice", secret), scope).status_code == 401
    users.delete("alice")
    users.add("alice", "x")
    assert token_for(client, ("alice", secret), scope).status_code == 401


def test_expired_and_revoked_tokens_prove_nothing(
    client: TestClient,
    people: dict[str, tuple[str, str]],
    leak_guard: LeakGuard,
    clock: FakeClock,
    database: Database,
) -> None:
    root = people["root"]
    scope = "repository:alice/a:pull"
    short = make_token(client, root, leak_guard, name="short", ttl=3600)
    revoked = make_token(client, root, leak_guard, name="gone")
    assert client.delete("/admin/v1/personal-tokens/alice/gone", auth=root).status_code == 204
    assert client.delete("/admin/v1/personal-tokens/alice/gone", auth=root).status_code == 404
    assert token_for(client, ("alice", revoked), scope).status_code == 401
    assert token_for(client, ("alice", short), scope).status_code == 200
    clock.advance(3601)
    assert token_for(client, ("alice", short), scope).status_code == 401
    # An expired token's name is free again; a revoked one's too.
    again = make_token(client, root, leak_guard, name="short")
    make_token(client, root, leak_guard, name="gone")
    assert token_for(client, ("alice", again), scope).status_code == 200
    states = {
        (t["name"], t["state"]) for t in client.get("/admin/v1/personal-tokens", auth=root).json()
    }
    assert states == {
        ("short", "expired"),
        ("gone", "revoked"),
        ("short", "live"),
        ("gone", "live"),
    }


# -- refused, and nothing changed -----------------------------------------------------


def test_create_refusals_change_nothing(
    client: TestClient,
    people: dict[str, tuple[str, str]],
    leak_guard: LeakGuard,
    database: Database,
    add_user: Callable[..., str],
) -> None:
    root = people["root"]
    add_user("dana", disabled=True)
    make_token(client, root, leak_guard)
    before = stored(database)
    ok = {"user": "alice", "name": "x", "scopes": ["repository:alice/a:pull"], "ttl": 60}
    cases: list[tuple[dict[str, Any], int]] = [
        ({**ok, "name": "laptop"}, 409),
        ({**ok, "name": "LAPTOP"}, 409),
        ({**ok, "ttl": 90 * 86400 + 1}, 400),
        ({**ok, "ttl": 0}, 400),
        ({**ok, "ttl": True}, 400),
        ({**ok, "scopes": ["nonsense"]}, 400),
        ({**ok, "scopes": ["admin:api:*"]}, 400),
        ({**ok, "scopes": []}, 400),
        ({**ok, "scopes": ["repository:a/b:pull"] * 101}, 400),
        ({**ok, "scopes": ["repository:a/b\x00:pull"]}, 400),
        ({**ok, "scopes": ["repository:" + "a" * 2000 + ":pull"]}, 400),
        ({**ok, "scopes": ["repository:\u00e9t\u00e9/x:pull"]}, 400),
        ({**ok, "name": "x y"}, 400),
        ({**ok, "name": "a\x00b"}, 400),
        ({**ok, "name": "n" * 256}, 400),
        ({**ok, "name": "n" * 100_000}, 413),
        ({**ok, "name": ""}, 400),
        ({**ok, "user": "nobody"}, 404),
        ({**ok, "user": "dana"}, 404),
        ({**ok, "user": "al\x00ice"}, 404),
        ({**ok, "user": "ALICE"}, 404),
        ({**ok, "extra": 1}, 400),
        ({k: v for k, v in ok.items() if k != "ttl"}, 400),
    ]
    for body, status in cases:
        answer = client.post("/admin/v1/personal-tokens", json=body, auth=root)
        assert answer.status_code == status, (repr(body)[:200], answer.text[:300])
        assert answer.json()["error"]
    assert stored(database) == before
    # Only admins: alice cannot make herself one through the admin API.
    answer = client.post("/admin/v1/personal-tokens", json=ok, auth=people["alice"])
    assert answer.status_code == 403
    assert stored(database) == before


def test_hostile_secrets_and_names_at_the_token_endpoint(
    client: TestClient,
    people: dict[str, tuple[str, str]],
    leak_guard: LeakGuard,
    database: Database,
) -> None:
    secret = make_token(client, people["root"], leak_guard)
    revoked = make_token(client, people["root"], leak_guard, name="gone")
    client.delete("/admin/v1/personal-tokens/alice/gone", auth=people["root"])
    before = stored(database)
    scope = "repository:alice/a:pull"
    for auth in (
        ("alice", "tspat_" + "A" * 10_000),
        ("alice", "tspat_" + "A" * 43),
        ("alice", secret[:-1] + ("A" if secret[-1] != "A" else "B")),
        ("alice", revoked),
        ("alice", "tspat_" + "\u00e9" * 43),
        ("a" * 10_000, secret),
        ("alice\u0000", secret),
        ("\u00e4lice", secret),
    ):
        answer = token_for(client, auth, scope)
        assert answer.status_code in (400, 401), (auth[0][:20], answer.text)
    assert stored(database) == before


def test_revoke_refusals_and_racing_revokes(
    client: TestClient,
    people: dict[str, tuple[str, str]],
    leak_guard: LeakGuard,
    database: Database,
) -> None:
    root = people["root"]
    make_token(client, root, leak_guard)
    before = stored(database)
    for user, name, status in (
        ("alice", "nope", 404),
        ("bob", "laptop", 404),
        ("alice", "x" * 300, 404),
        ("alice", "%00", 404),
        ("%C3%A9", "laptop", 404),
    ):
        answer = client.delete(f"/admin/v1/personal-tokens/{user}/{name}", auth=root)
        assert answer.status_code == status, (user, name, answer.text)
    assert stored(database) == before
    accounts = accounts_of(client)
    outcomes: list[str] = []

    def revoke() -> None:
        try:
            accounts.revoke_personal_token(Actor("root", "test", "user"), "alice", "laptop")
            outcomes.append("revoked")
        except UnknownAccount:
            outcomes.append("gone")

    threads = [threading.Thread(target=revoke) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["gone"] * 7 + ["revoked"]


def test_a_person_holds_a_bounded_number_of_tokens(
    client: TestClient, people: dict[str, tuple[str, str]], database: Database
) -> None:
    accounts = accounts_of(client)
    actor = Actor("root", "test", "user")
    for number in range(100):
        accounts.create_personal_token(
            actor, "alice", f"t{number}", ["repository:alice/a:pull"], 60
        )
    before = stored(database)
    answer = client.post(
        "/admin/v1/personal-tokens",
        json={
            "user": "alice",
            "name": "one-more",
            "scopes": ["repository:alice/a:pull"],
            "ttl": 60,
        },
        auth=people["root"],
    )
    assert answer.status_code == 400 and "at most 100" in answer.text
    assert stored(database) == before


def test_every_act_is_audited_with_its_target(
    client: TestClient,
    people: dict[str, tuple[str, str]],
    leak_guard: LeakGuard,
    database: Database,
) -> None:
    root = people["root"]
    secret = make_token(client, root, leak_guard)
    client.delete("/admin/v1/personal-tokens/alice/laptop", auth=root)
    client.delete("/admin/v1/personal-tokens/alice/laptop", auth=root)
    with database.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT action, target, outcome, subject FROM audit_events "
                "WHERE action LIKE 'personal_token.%' ORDER BY id"
            )
        ).all()
        dump = repr(conn.execute(text("SELECT * FROM audit_events")).all())
    assert [tuple(r) for r in rows] == [
        ("personal_token.create", "alice/laptop", "ok", "root"),
        ("personal_token.revoke", "alice/laptop", "ok", "root"),
        ("personal_token.revoke", "alice/laptop", "not_found", "root"),
    ]
    assert secret not in dump


def test_max_ttl_is_configurable_as_a_duration(
    make_config: Callable[..., Config],
    start_client: StartClient,
    add_user: Callable[..., str],
) -> None:
    root = ("root", add_user("root", groups=("admin",)))
    add_user("alice")
    config = make_config({"personal_tokens": {"max_ttl": "2d"}})
    assert config.personal_tokens.max_ttl == 2 * 86400
    with start_client(config) as client:
        body = {"user": "alice", "name": "a", "scopes": ["repository:alice/a:pull"]}
        too_long = client.post(
            "/admin/v1/personal-tokens", json={**body, "ttl": 2 * 86400 + 1}, auth=root
        )
        assert too_long.status_code == 400
        fits = client.post("/admin/v1/personal-tokens", json={**body, "ttl": 2 * 86400}, auth=root)
        assert fits.status_code == 201


def test_a_token_of_an_htpasswd_person_ends_when_the_file_drops_them(
    make_config: Callable[..., Config],
    start_client: StartClient,
    add_user: Callable[..., str],
    leak_guard: LeakGuard,
    tmp_path: Path,
    decode_token: Callable[[str], dict[str, Any]],
) -> None:
    root = ("root", add_user("root", groups=("admin",)))
    htpasswd = tmp_path / "users.htpasswd"
    htpasswd.write_text(f"hana:{hash_password('hana-pw-1', rounds=4)}\n")
    config = make_config({"users": {"htpasswd": str(htpasswd)}})
    with start_client(config) as client:
        secret = make_token(
            client, root, leak_guard, user="hana", scopes=("repository:hana/*:pull",)
        )
        answer = token_for(client, ("hana", secret), "repository:hana/app:pull")
        assert granted(answer, decode_token) == {"repository:hana/app": ["pull"]}
        (listed,) = client.get("/admin/v1/personal-tokens", auth=root).json()
        assert listed["owner"] == "hana"
        htpasswd.write_text("# nobody\n")
        st = htpasswd.stat()
        os.utime(htpasswd, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
        assert token_for(client, ("hana", secret), "repository:hana/app:pull").status_code == 401


def test_every_use_is_checked_and_recorded_afresh(
    client: TestClient,
    people: dict[str, tuple[str, str]],
    leak_guard: LeakGuard,
    clock: FakeClock,
) -> None:
    """No credential cache: each login reads the token, so each records its use."""
    root = people["root"]
    secret = make_token(client, root, leak_guard)
    seen = []
    for _ in range(3):
        assert token_for(client, ("alice", secret), "repository:alice/a:pull").status_code == 200
        (entry,) = client.get("/admin/v1/personal-tokens", auth=root).json()
        seen.append(entry["last_used_at"])
        clock.advance(60)
    assert len(set(seen)) == 3


def test_the_oauth_password_grant_with_a_token_gets_no_refresh_token(
    client: TestClient, people: dict[str, tuple[str, str]], leak_guard: LeakGuard
) -> None:
    secret = make_token(client, people["root"], leak_guard)
    answer = client.post(
        "/token",
        data={"grant_type": "password", "service": SERVICE, "client_id": "cli",
              "access_type": "offline", "username": "alice", "password": secret,
              "scope": "repository:alice/a:pull"},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert "refresh_token" not in answer.json()
    assert answer.json()["scope"] == "repository:alice/a:pull"

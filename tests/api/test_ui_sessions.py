"""Web-page sessions end for good, and are another account's to no one.

A password change, a disable, a demotion and a delete end every web session
of the user: the rows are gone before anyone asks, and enabling, promoting
or creating the user again brings none back. A user deleted and created
again is a new account: no session, refresh token or CI token of the old
one reaches it. Admins list and end sessions through the API, the CLI and
the page. The real app (lifespan and all) or the real server process.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import LeakGuard
from tests.support.tokenserver import TokenServer
from tokenserver.accounts import Accounts
from tokenserver.secret import Secret
from tokenserver.store.db import Database
from tokenserver.store.refresh_tokens import RefreshTokenStore

SERVICE = "registry"
ROOT_PW, OPS_PW = "root-pw-1", "ops-pw-1"
FULL_WIDTH_ROOT = "\uff52\uff4f\uff4f\uff54"


@pytest.fixture
def admins(add_user: Callable[..., str], leak_guard: LeakGuard) -> tuple[str, str]:
    """`root`, whose sessions the tests end, and `ops`, the admin who ends them."""
    add_user("root", ROOT_PW, ("admin", "dev"))
    add_user("ops", OPS_PW, ("admin",))
    return ROOT_PW, OPS_PW


OPS = ("ops", OPS_PW)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html[:500]
    return found.group(1)


class Browser:
    """One browser on the page: its own cookie jar, against the running app."""

    def __init__(self, client: TestClient, user: str, password: str) -> None:
        self.http = TestClient(client.app, follow_redirects=False)
        login = self.http.get("/ui/login")
        answer = self.http.post(
            "/ui/login",
            data={"username": user, "password": password, "csrf": _csrf(login.text)},
        )
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/users", answer.text
        self.cookie = self.http.cookies["ts_session"]

    def signed_in(self) -> bool:
        answer = self.http.get("/ui/users")
        assert answer.status_code in (200, 303), answer.text
        if answer.status_code == 303:
            assert answer.headers["location"] == "/ui/login"
        return answer.status_code == 200

    def post(self, path: str, **form: str) -> httpx.Response:
        """A form of the page, with the CSRF token the page gave it."""
        csrf = _csrf(self.http.get("/ui/users").text)
        return self.http.post(path, data={**form, "csrf": csrf})


def _rows(database: Database, subject: str) -> int:
    """Session rows of `subject`, read straight from the table."""
    with database.engine.connect() as conn:
        count = conn.execute(
            text("SELECT count(*) FROM ui_sessions WHERE subject = :s"), {"s": subject}
        ).scalar_one()
    return int(count)


def _accounts(client: TestClient) -> Accounts:
    service: Accounts = client.app.state.services.accounts  # type: ignore[attr-defined]
    return service


# -- ended for good ------------------------------------------------------------


@pytest.mark.parametrize("via", ["api", "page"])
def test_a_password_change_ends_every_web_session_of_the_user(
    client: TestClient, admins: tuple[str, str], database: Database, via: str
) -> None:
    first, second = Browser(client, "root", ROOT_PW), Browser(client, "root", ROOT_PW)
    bystander = Browser(client, "ops", OPS_PW)
    assert _rows(database, "root") == 2
    if via == "api":
        changed = client.put(
            "/admin/v1/users/root/password", json={"password": "new-pw-2"}, auth=OPS
        )
        assert changed.status_code == 204, changed.text
    else:
        answer = bystander.post("/ui/users/root/password", password="new-pw-2")
        assert answer.status_code == 303, answer.text
    # Gone from the table before either browser asks, not merely refused when it does.
    assert _rows(database, "root") == 0
    assert not first.signed_in() and not second.signed_in()
    assert bystander.signed_in()
    assert Browser(client, "root", "new-pw-2").signed_in()


# (what ends the sessions, what would bring them back) through the admin API.
ENDS_AND_RESTORES = {
    "disable": (
        ("PUT", "/admin/v1/users/root/disabled", {"disabled": True}),
        ("PUT", "/admin/v1/users/root/disabled", {"disabled": False}),
    ),
    "demote": (
        ("PUT", "/admin/v1/users/root/groups", {"groups": ["dev"]}),
        ("PUT", "/admin/v1/users/root/groups", {"groups": ["admin", "dev"]}),
    ),
    "delete": (
        ("DELETE", "/admin/v1/users/root", None),
        ("POST", "/admin/v1/users", {"name": "root", "password": ROOT_PW, "groups": ["admin"]}),
    ),
}


@pytest.mark.parametrize("change", list(ENDS_AND_RESTORES))
def test_disable_demote_and_delete_end_sessions_and_nothing_revives_them(
    client: TestClient, admins: tuple[str, str], database: Database, change: str
) -> None:
    browser = Browser(client, "root", ROOT_PW)
    end, restore = ENDS_AND_RESTORES[change]
    for method, path, body in (end, restore):
        if method == "DELETE":
            answer = client.request(method, path, auth=OPS)
        else:
            answer = client.request(method, path, json=body, auth=OPS)
        assert answer.status_code in (200, 201, 204), answer.text
        assert _rows(database, "root") == 0, f"after {method} {path}"
    assert not browser.signed_in()
    # The account itself is back: a new sign-in works, the old cookie never again.
    assert Browser(client, "root", ROOT_PW).signed_in()
    assert not browser.signed_in()


def test_a_demoted_admin_keeps_nothing_but_an_admin_keeps_other_group_changes(
    client: TestClient, admins: tuple[str, str], database: Database
) -> None:
    browser = Browser(client, "root", ROOT_PW)
    answer = client.put("/admin/v1/users/root/groups", json={"groups": ["admin", "qa"]}, auth=OPS)
    assert answer.status_code == 200
    assert _rows(database, "root") == 1 and browser.signed_in()


def test_a_sign_in_racing_a_change_keeps_no_session(
    client: TestClient, admins: tuple[str, str], database: Database
) -> None:
    """A sign-in whose password check ran before the change, and its insert after it."""
    accounts = _accounts(client)
    authenticator = client.app.state.services.grants.authenticator  # type: ignore[attr-defined]
    created = {"name": "root", "password": ROOT_PW, "groups": ["admin"]}
    for method, path, body in (
        ("PUT", "/admin/v1/users/root/password", {"password": "new-pw-3"}),
        ("PUT", "/admin/v1/users/root/disabled", {"disabled": True}),
        ("PUT", "/admin/v1/users/root/groups", {"groups": ["dev"]}),
        ("DELETE", "/admin/v1/users/root", None),
        ("POST", "/admin/v1/users", created),  # deleted and created again
    ):
        client.delete("/admin/v1/users/root", auth=OPS)
        assert client.post("/admin/v1/users", json=created, auth=OPS).status_code == 201
        proven = authenticator.authenticate("root", Secret(ROOT_PW))
        if method == "POST":
            assert client.delete("/admin/v1/users/root", auth=OPS).status_code == 204
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        assert client.request(method, path, auth=OPS, **kwargs).is_success
        assert accounts.open_ui_session(proven, dt.timedelta(hours=1)) is None, path
        assert _rows(database, "root") == 0, path


# -- a user created again is another account ------------------------------------


def test_a_recreated_user_is_reached_by_no_old_session_or_refresh_token(
    client: TestClient,
    admins: tuple[str, str],
    database: Database,
    leak_guard: LeakGuard,
) -> None:
    browser = Browser(client, "root", ROOT_PW)
    offline = client.get("/token", params={"service": SERVICE, "offline_token": "true"},
                         auth=("root", ROOT_PW))  # fmt: skip
    old_refresh = leak_guard.add(offline.json()["refresh_token"])
    old = client.app.state.services.grants.authenticator.authenticate(  # type: ignore[attr-defined]
        "root", Secret(ROOT_PW)
    )
    assert client.delete("/admin/v1/users/root", auth=OPS).status_code == 204
    # A refresh token issued to the old account as it was deleted (a login in flight).
    in_flight = leak_guard.add(
        RefreshTokenStore(database).issue(
            "root", SERVICE, "docker", dt.timedelta(days=1),
            client.app.state.services.grants.clock(),  # type: ignore[attr-defined]
            backend=old.backend, account_key=old.account_key,
        )
    )  # fmt: skip
    same = {"name": "root", "password": ROOT_PW, "groups": ["admin", "dev"]}
    assert client.post("/admin/v1/users", json=same, auth=OPS).status_code == 201

    assert not browser.signed_in()
    for value in (old_refresh, in_flight):
        refreshed = client.post(
            "/token",
            data={"grant_type": "refresh_token", "service": SERVICE, "client_id": "docker",
                  "refresh_token": value},
        )  # fmt: skip
        assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    # The new account's own logins work.
    fresh = client.get("/token", params={"service": SERVICE, "offline_token": "true"},
                       auth=("root", ROOT_PW))  # fmt: skip
    new_refresh = leak_guard.add(fresh.json()["refresh_token"])
    again = client.post(
        "/token",
        data={"grant_type": "refresh_token", "service": SERVICE, "client_id": "docker",
              "refresh_token": new_refresh},
    )  # fmt: skip
    assert again.status_code == 200, again.text
    assert Browser(client, "root", ROOT_PW).signed_in()


def test_a_recreated_user_is_reached_by_no_old_ci_token(
    client: TestClient, admins: tuple[str, str], leak_guard: LeakGuard
) -> None:
    assert client.delete("/admin/v1/users/root", auth=OPS).status_code == 204
    # The name is free: a CI token takes it, and while it lives no user can.
    made = client.post(
        "/admin/v1/ci-tokens",
        json={"name": "root", "scopes": ["repository:root/*:pull"], "ttl": 600},
        auth=OPS,
    )
    assert made.status_code == 201, made.text
    secret = leak_guard.add(made.json()["secret"])
    same = {"name": "root", "password": ROOT_PW, "groups": ["admin"]}
    assert client.post("/admin/v1/users", json=same, auth=OPS).status_code == 409
    assert client.delete("/admin/v1/ci-tokens/root", auth=OPS).status_code == 204
    assert client.post("/admin/v1/users", json=same, auth=OPS).status_code == 201
    assert (
        client.get("/token", params={"service": SERVICE}, auth=("root", secret)).status_code == 401
    )
    admin = client.get("/token", params={"service": SERVICE, "scope": "admin:api:*"},
                       auth=("root", ROOT_PW))  # fmt: skip
    assert admin.status_code == 200 and admin.json()["token"]


# -- listing and ending, through the API ------------------------------------------


def test_admins_list_and_end_web_sessions_through_the_api(
    client: TestClient, admins: tuple[str, str], database: Database
) -> None:
    first, second = Browser(client, "root", ROOT_PW), Browser(client, "root", ROOT_PW)
    Browser(client, "ops", OPS_PW)
    listed = client.get("/admin/v1/ui-sessions", auth=OPS)
    assert listed.status_code == 200, listed.text
    sessions = listed.json()
    assert [(s["user"], s["backend"]) for s in sessions] == [
        ("root", "database"), ("root", "database"), ("ops", "database"),
    ]  # fmt: skip
    assert all(set(s) == {"id", "user", "backend", "created_at", "expires_at"} for s in sessions)
    for cookie in (first.cookie, second.cookie):
        assert cookie not in listed.text
        assert hashlib.sha256(cookie.encode()).hexdigest() not in listed.text
    with database.engine.connect() as conn:
        for (csrf,) in conn.execute(text("SELECT csrf FROM ui_sessions")):
            assert csrf not in listed.text
    # Any spelling of the name finds the user's sessions.
    roots = client.get("/admin/v1/ui-sessions", params={"user": "ROOT"}, auth=OPS).json()
    assert [s["id"] for s in roots] == [sessions[0]["id"], sessions[1]["id"]]

    one = sessions[0]["id"]
    assert client.delete(f"/admin/v1/ui-sessions/{one}", auth=OPS).status_code == 204
    assert not first.signed_in() and second.signed_in()
    gone = client.delete(f"/admin/v1/ui-sessions/{one}", auth=OPS)
    assert gone.status_code == 404 and gone.json()["error"] == "not_found"
    ended = client.delete("/admin/v1/ui-sessions", params={"user": "Root"}, auth=OPS)
    assert ended.status_code == 200 and ended.json() == {"ended": 1}
    assert not second.signed_in() and _rows(database, "root") == 0
    assert client.delete("/admin/v1/ui-sessions", params={"user": "root"}, auth=OPS).json() == {
        "ended": 0
    }

    trail = client.get("/admin/v1/audit", params={"action": "ui_session.end"}, auth=OPS).json()
    assert [(r["target"], r["outcome"], r["subject"], r["via"]) for r in reversed(trail)] == [
        (f"#{one}", "ok", "ops", "basic"),
        (f"#{one}", "not_found", "ops", "basic"),
        ("Root", "ok", "ops", "basic"),
        ("root", "ok", "ops", "basic"),
    ]


# Hostile ids and names: 400 or 404 in the admin JSON error shape, never a 5xx.
HOSTILE = [
    ("DELETE", "/admin/v1/ui-sessions/0", 400),
    ("DELETE", "/admin/v1/ui-sessions/-1", 400),
    ("DELETE", f"/admin/v1/ui-sessions/{2**62 + 1}", 400),
    ("DELETE", f"/admin/v1/ui-sessions/{2**63}", 400),
    ("DELETE", f"/admin/v1/ui-sessions/{2**64}", 400),
    ("DELETE", "/admin/v1/ui-sessions/" + "9" * 5000, 400),
    ("DELETE", "/admin/v1/ui-sessions/%C2%B2", 400),
    ("DELETE", "/admin/v1/ui-sessions/%D9%A1", 400),
    ("DELETE", "/admin/v1/ui-sessions/1.5", 400),
    ("DELETE", "/admin/v1/ui-sessions/1e3", 400),
    ("DELETE", "/admin/v1/ui-sessions/%00", 400),
    ("DELETE", f"/admin/v1/ui-sessions/{2**62}", 404),
    ("DELETE", "/admin/v1/ui-sessions/12345", 404),
    ("DELETE", "/admin/v1/ui-sessions", 400),
    ("DELETE", "/admin/v1/ui-sessions?user=", 400),
    ("DELETE", "/admin/v1/ui-sessions?user=" + "a" * 256, 400),
    ("DELETE", "/admin/v1/ui-sessions?user=" + "a" * 20_000, 400),
    ("DELETE", "/admin/v1/ui-sessions?user=%00", 404),
    ("DELETE", "/admin/v1/ui-sessions?user=a%2Fb", 404),
    ("GET", "/admin/v1/ui-sessions?user=" + "a" * 20_000, 400),
    ("GET", "/admin/v1/ui-sessions?user=ro%00ot", 404),
    ("GET", "/admin/v1/ui-sessions?user=a%3Ab", 404),
]


@pytest.mark.parametrize(("method", "path", "status"), HOSTILE)
def test_hostile_ids_and_names_are_400_or_404(
    client: TestClient, admins: tuple[str, str], method: str, path: str, status: int
) -> None:
    answer = client.request(method, path, auth=OPS)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"] and body["error_description"] and body["details"]


def test_names_of_no_one_list_and_end_nothing(client: TestClient, admins: tuple[str, str]) -> None:
    Browser(client, "root", ROOT_PW)
    # Bytes that are no UTF-8 arrive as U+FFFD: a name, but no one's.
    for query in ("rööt", FULL_WIDTH_ROOT + "x", "nobody", "%ED%A0%80", "%FF%FE"):
        listed = client.get(f"/admin/v1/ui-sessions?user={query}", auth=OPS)
        assert listed.status_code == 200 and listed.json() == []
        ended = client.delete(f"/admin/v1/ui-sessions?user={query}", auth=OPS)
        assert ended.status_code == 200 and ended.json() == {"ended": 0}
    # The full-width spelling is root's: one account however it is spelt.
    assert (
        len(client.get("/admin/v1/ui-sessions", params={"user": FULL_WIDTH_ROOT}, auth=OPS).json())
        == 1
    )


# -- the page ------------------------------------------------------------------


def test_the_page_lists_and_ends_sessions_with_its_csrf_token(
    client: TestClient, admins: tuple[str, str], database: Database
) -> None:
    me, other = Browser(client, "ops", OPS_PW), Browser(client, "root", ROOT_PW)
    page = me.http.get("/ui/sessions")
    assert page.status_code == 200
    assert page.text.count('action="/ui/sessions/') == 2
    assert "(this one)" in page.text and me.cookie not in page.text
    (other_id,) = [s["id"] for s in client.get("/admin/v1/ui-sessions?user=root", auth=OPS).json()]

    forged = me.http.post(f"/ui/sessions/{other_id}/end", data={"csrf": "not-the-token"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    anonymous = TestClient(client.app, follow_redirects=False).post(
        f"/ui/sessions/{other_id}/end", data={"csrf": "x"}
    )
    assert anonymous.status_code == 401
    assert other.signed_in()

    ended = me.post(f"/ui/sessions/{other_id}/end")
    assert (
        ended.status_code == 303 and ended.headers["location"] == "/ui/sessions?done=session-ended"
    )
    assert "Web session ended." in me.http.get(ended.headers["location"]).text
    assert not other.signed_in()
    again = me.post(f"/ui/sessions/{other_id}/end")
    assert again.status_code == 404 and "no live web session" in again.text

    for hostile, status in (
        (str(2**63), 400), ("%C2%B2", 400), ("9" * 5000, 400), ("0", 400), ("%00", 400),
        (str(2**62), 404),
    ):  # fmt: skip
        answer = me.post(f"/ui/sessions/{hostile}/end")
        assert answer.status_code == status, (hostile, answer.text)
        assert "text/html" in answer.headers["content-type"]
    assert me.http.get("/ui/sessions?user=%00").status_code == 404
    assert me.http.get("/ui/sessions?user=" + "x" * 5000).status_code == 200

    # All of a user's, then one's own: signed out, off to the sign-in page.
    Browser(client, "root", ROOT_PW)
    listed = me.http.get("/ui/sessions?user=Root")
    assert 'id="end-all"' in listed.text
    assert me.post("/ui/sessions/end", user="Root").headers["location"] == (
        "/ui/sessions?done=sessions-ended&name=Root"
    )
    assert _rows(database, "root") == 0
    mine = me.post(f"/ui/sessions/{_own_id(client)}/end")
    assert mine.status_code == 303 and mine.headers["location"] == "/ui/login"
    assert not me.signed_in() and _rows(database, "ops") == 0

    trail = client.get("/admin/v1/audit", params={"action": "ui_session.end"}, auth=OPS).json()
    assert {r["via"] for r in trail} == {"ui"}
    # Malformed ids never reach the service; a well-formed one of no session is recorded.
    assert [r["outcome"] for r in reversed(trail)] == ["ok", "not_found", "not_found", "ok", "ok"]


def _own_id(client: TestClient) -> int:
    (session,) = client.get("/admin/v1/ui-sessions?user=ops", auth=OPS).json()
    return int(session["id"])


# -- the real process and its CLI -------------------------------------------------


@pytest.fixture
def server(tmp_path: Path, real_peer: None) -> Iterator[TokenServer]:
    ts = TokenServer(tmp_path / "ts", extra={"users": {"bcrypt_cost": 4}})
    ts.add_user("root", ROOT_PW, "admin")
    ts.add_user("ops", OPS_PW, "admin")
    with ts:
        yield ts


def _process_sign_in(server: TokenServer, user: str, password: str) -> httpx.Client:
    browser = httpx.Client(base_url=server.url, timeout=10)
    form = browser.get("/ui/login")
    answer = browser.post(
        "/ui/login", data={"username": user, "password": password, "csrf": _csrf(form.text)}
    )
    assert answer.status_code == 303, answer.text
    assert browser.get("/ui/users").status_code == 200
    return browser


def _process_signed_in(browser: httpx.Client) -> bool:
    answer = browser.get("/ui/users")
    assert answer.status_code in (200, 303)
    return answer.status_code == 200


def test_the_cli_ends_sessions_of_a_running_server(server: TokenServer) -> None:
    root = _process_sign_in(server, "root", ROOT_PW)
    out = server.cli("user", "passwd", "root", "--password-stdin", input="new-pw-4\n")
    assert "1 web session(s) ended" in out
    assert json.loads(server.cli("ui-session", "list", "--json", "--user", "root")) == []
    assert not _process_signed_in(root)

    for end, restore in (
        (("user", "disable", "root"), ("user", "enable", "root")),
        (
            ("user", "groups", "root", "--group", "dev"),
            ("user", "groups", "root", "--group", "admin"),
        ),
        (("user", "del", "root"), None),
    ):
        root = _process_sign_in(server, "root", "new-pw-4")
        server.cli(*end)
        assert json.loads(server.cli("ui-session", "list", "--json", "--user", "root")) == []
        if restore is None:
            server.add_user("root", "new-pw-4", "admin")
        else:
            server.cli(*restore)
        assert not _process_signed_in(root), end

    ops, root = (
        _process_sign_in(server, "ops", OPS_PW),
        _process_sign_in(server, "root", "new-pw-4"),
    )
    listed = json.loads(server.cli("ui-session", "list", "--json"))
    assert [(s["user"], s["backend"]) for s in listed] == [
        ("ops", "database"),
        ("root", "database"),
    ]
    assert set(listed[0]) == {"id", "user", "backend", "created_at", "expires_at"}
    table = server.cli("ui-session", "list", "--user", "OPS")
    assert table.startswith(f"{listed[0]['id']}\tops\tdatabase\t") and table.count("\n") == 1
    assert server.cli("ui-session", "end", str(listed[0]["id"])) == (
        f"web session {listed[0]['id']} ended\n"
    )
    assert not _process_signed_in(ops) and _process_signed_in(root)
    assert "ended 1 web session(s) of ROOT" in server.cli("ui-session", "end", "--user", "ROOT")
    assert not _process_signed_in(root)
    trail = server.cli("audit", "tail", "--json", "--action", "ui_session.end")
    assert trail.count('"outcome": "ok"') == 2 and '"via": "cli"' in trail

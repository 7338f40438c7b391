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
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import LeakGuard
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
    service: Accounts = client.app.state.accounts  # type: ignore[attr-defined]
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
    authenticator = client.app.state.grants.authenticator  # type: ignore[attr-defined]
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
    old = client.app.state.grants.authenticator.authenticate(  # type: ignore[attr-defined]
        "root", Secret(ROOT_PW)
    )
    assert client.delete("/admin/v1/users/root", auth=OPS).status_code == 204
    # A refresh token issued to the old account as it was deleted (a login in flight).
    in_flight = leak_guard.add(
        RefreshTokenStore(database).issue(
            "root", SERVICE, "docker", dt.timedelta(days=1),
            client.app.state.grants.clock(),  # type: ignore[attr-defined]
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

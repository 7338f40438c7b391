"""The admin API's list and delete routes and the page's list pages, as an attacker sends them.

Each route, declared through `routes/admin/common.answers_nothing` or
`routes/ui/common.list_page` or as a plain endpoint, gets huge, malformed and
non-ASCII path parts, queries and bodies: every answer is the RFC 6749 §5.2
JSON 4xx (or the page's redirect to sign in), never a 5xx; the stored rows
are exactly as they were; a body past the limit is refused unread; and deletes
of one row racing each other remove it once.
"""

from __future__ import annotations

import concurrent.futures
import re
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tokenserver.config import Config
from tokenserver.store.db import Database

LONG = "a" * 20_000
ARABIC_DIGITS = "%D9%A1%D9%A2"  # "١٢": digits to Unicode, not to a row id
# Every table a probe could change; the audit trail records refusals by design.
TABLES = (
    "users",
    "user_groups",
    "refresh_tokens",
    "ci_tokens",
    "personal_tokens",
    "ui_sessions",
    "federation_trusts",
    "login_failures",
)


@pytest.fixture
def admin(add_user: Callable[..., str]) -> tuple[str, str]:
    return "root", add_user("root", groups=("admin",))


@pytest.fixture
def stocked(
    client: TestClient, admin: tuple[str, str], add_user: Callable[..., str]
) -> tuple[str, str]:
    """A user with a refresh token and a personal token, a CI token, a federation trust and
    a web session."""
    alice = ("alice", add_user("alice", groups=("dev",)))
    answer = client.post(
        "/token",
        data={
            "grant_type": "password",
            "service": "registry",
            "client_id": "probe",
            "access_type": "offline",
            "username": alice[0],
            "password": alice[1],
        },
    )
    assert answer.status_code == 200 and answer.json().get("refresh_token"), answer.text
    made = client.post(
        "/admin/v1/ci-tokens",
        json={"name": "ci-a", "scopes": ["repository:a/b:pull"], "ttl": 3600},
        auth=admin,
    )
    assert made.status_code == 201, made.text
    made = client.post(
        "/admin/v1/personal-tokens",
        json={"user": "alice", "name": "laptop", "scopes": ["repository:alice/*:pull"], "ttl": 60},
        auth=admin,
    )
    assert made.status_code == 201, made.text
    trust = {
        "name": "gha-a",
        "issuer": "https://127.0.0.1:9/issuer",
        "audience": "registry",
        "scopes": ["repository:a/b:pull"],
    }
    made = client.post("/admin/v1/federation-trusts", json=trust, auth=admin)
    assert made.status_code == 201, made.text
    assert _signed_in(client, admin).get("/ui/users").status_code == 200
    return admin


def _signed_in(client: TestClient, who: tuple[str, str]) -> TestClient:
    browser = TestClient(client.app, follow_redirects=False)
    login = browser.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)
    assert csrf is not None
    answer = browser.post(
        "/ui/login", data={"username": who[0], "password": who[1], "csrf": csrf.group(1)}
    )
    assert answer.status_code == 303, answer.text
    return browser


def _stored(config: Config) -> dict[str, list[tuple[Any, ...]]]:
    db = Database(config.database.url)
    try:
        with db.engine.connect() as conn:
            return {
                # The names are this module's constants, not input.
                table: sorted(
                    (tuple(row) for row in conn.execute(text(f"SELECT * FROM {table}"))),  # noqa: S608
                    key=repr,
                )
                for table in TABLES
            }
    finally:
        db.dispose()


# (method, path, JSON body (raw if bytes) or None, the status expected)
PROBES: list[tuple[str, str, Any, int]] = [
    # GET /audit
    ("GET", "/admin/v1/audit?subject=" + LONG, None, 400),
    ("GET", "/admin/v1/audit?subject=r%C3%B6%C3%B6t&since=%D9%A1", None, 400),
    ("GET", "/admin/v1/audit?limit=%D9%A1", None, 400),
    ("GET", "/admin/v1/audit?until=" + "9" * 5000, None, 400),
    # DELETE /ci-tokens/{name}
    ("DELETE", "/admin/v1/ci-tokens/" + LONG, None, 404),
    ("DELETE", "/admin/v1/ci-tokens/ci-%00a", None, 404),
    ("DELETE", "/admin/v1/ci-tokens/c%C3%AE-a", None, 404),
    ("DELETE", "/admin/v1/ci-tokens/%FF%FE", None, 404),
    # GET /personal-tokens, DELETE /personal-tokens/{user}/{name}
    ("GET", "/admin/v1/personal-tokens?user=" + LONG, None, 400),
    ("GET", "/admin/v1/personal-tokens?user=al%00ice", None, 404),
    ("GET", "/admin/v1/personal-tokens?user=r%C3%B6%C3%B6t", None, 200),
    ("DELETE", "/admin/v1/personal-tokens/alice/" + LONG, None, 404),
    ("DELETE", "/admin/v1/personal-tokens/" + LONG + "/laptop", None, 404),
    ("DELETE", "/admin/v1/personal-tokens/alice/lap%00top", None, 404),
    ("DELETE", "/admin/v1/personal-tokens/al%00ice/laptop", None, 404),
    ("DELETE", "/admin/v1/personal-tokens/%FF%FE/laptop", None, 404),
    # POST /personal-tokens
    ("POST", "/admin/v1/personal-tokens", {"user": "alice", "name": "x", "scopes": ["r"]}, 400),
    ("POST", "/admin/v1/personal-tokens", b'{"user": "al\\u0000ice", "name": "x"}', 400),
    (
        "POST",
        "/admin/v1/personal-tokens",
        {"user": "alice", "name": "laptop", "scopes": ["repository:alice/a:pull"], "ttl": 60},
        409,
    ),
    # GET /refresh-tokens
    ("GET", "/admin/v1/refresh-tokens?user=" + LONG, None, 400),
    ("GET", "/admin/v1/refresh-tokens?user=al%00ice&user=x", None, 200),
    # DELETE /refresh-tokens/{token_id}
    ("DELETE", "/admin/v1/refresh-tokens/" + ARABIC_DIGITS, None, 400),
    ("DELETE", "/admin/v1/refresh-tokens/" + "9" * 5000, None, 400),
    ("DELETE", "/admin/v1/refresh-tokens/-1", None, 400),
    # Other spellings of row 1, which int() would take.
    *(("DELETE", f"/admin/v1/refresh-tokens/{i}", None, 400) for i in ("1.0", "+1", "%201", "1_0")),
    *(("DELETE", f"/admin/v1/ui-sessions/{i}", None, 400) for i in ("1.0", "+1", "%201", "1_0")),
    # GET /federation-trusts
    ("GET", "/admin/v1/federation-trusts?" + "x=" + LONG, None, 200),
    # DELETE /federation-trusts/{name}
    ("DELETE", "/admin/v1/federation-trusts/" + LONG, None, 404),
    ("DELETE", "/admin/v1/federation-trusts/gha-%00a", None, 404),
    ("DELETE", "/admin/v1/federation-trusts/gh%C3%A4-a", None, 404),
    # GET /ui-sessions
    ("GET", "/admin/v1/ui-sessions?user=" + LONG, None, 400),
    ("GET", "/admin/v1/ui-sessions?user=r%C3%B6%C3%B6t", None, 200),
    # PUT /users/{name}/password, DELETE /users/{name}
    ("PUT", "/admin/v1/users/alice/password", {"password": None}, 400),
    ("PUT", "/admin/v1/users/alice/password", b'{"password": "p\\ud800w"}', 400),
    ("PUT", "/admin/v1/users/alice/password", {"password": "x" * 73}, 400),
    ("PUT", "/admin/v1/users/alice/password", [LONG], 400),
    ("PUT", "/admin/v1/users/" + LONG + "/password", {"password": "pw-new-1"}, 404),
    ("DELETE", "/admin/v1/users/" + LONG, None, 404),
    ("DELETE", "/admin/v1/users/al%00ice", None, 404),
    ("DELETE", "/admin/v1/users/%D9%A1", None, 404),
]


def test_hostile_requests_get_a_json_4xx_and_change_nothing(
    client: TestClient, stocked: tuple[str, str], config: Config
) -> None:
    before = _stored(config)
    for method, path, body, status in PROBES:
        if isinstance(body, bytes):  # JSON no client library would write
            answer = client.request(
                method,
                path,
                content=body,
                headers={"Content-Type": "application/json"},
                auth=stocked,
            )
        else:
            answer = client.request(method, path, json=body, auth=stocked)
        assert answer.status_code == status, (method, path[:80], answer.text[:300])
        if status >= 400:
            error = answer.json()
            assert error["error"] and error["error_description"], error
            # What was sent is not echoed back whole.
            assert len(answer.content) < 4096, (method, path[:80])
    assert _stored(config) == before


def test_a_body_past_the_limit_is_refused_unread(
    client: TestClient, stocked: tuple[str, str], config: Config
) -> None:
    before = _stored(config)
    body = b'{"password": "' + b"p" * (8 * 1024 * 1024) + b'"}'
    tracemalloc.start()
    try:
        answer = client.put(
            "/admin/v1/users/alice/password",
            content=body,
            headers={"Content-Type": "application/json"},
            auth=stocked,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status_code == 413, answer.text[:300]
    assert answer.json()["error"]
    # The client's own copy of the 8 MiB body is the most held: the server
    # read no more than its limit of it, and parsed none.
    assert peak < 2 * len(body), peak
    assert _stored(config) == before


LIST_PAGES = ("/ui/users", "/ui/sessions", "/ui/ci-tokens")


@pytest.mark.parametrize("page", LIST_PAGES)
def test_list_pages_turn_strangers_away_and_say_only_fixed_texts(
    client: TestClient, stocked: tuple[str, str], config: Config, page: str
) -> None:
    browser = _signed_in(client, stocked)
    before = _stored(config)
    stranger = TestClient(client.app, follow_redirects=False)
    for cookie in ("forged", "x" * 5000, "%C3%A9t%C3%A9", "a;b"):
        stranger.cookies.set("ts_session", cookie)
        answer = stranger.get(page)
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"
    for query in (
        "?done=user-created&name=" + LONG,
        "?done=" + LONG,
        "?done=user-created&name=%3Cscript%3E%E2%80%AE",
        "?done=%00&name=%FF",
    ):
        answer = browser.get(page + query)
        assert answer.status_code == 200, (page, query[:60])
        assert "<script>" not in answer.text
        assert LONG[:300] not in answer.text
    assert _stored(config) == before


def test_the_page_revokes_a_refresh_token_by_its_digits_only(
    client: TestClient, stocked: tuple[str, str], config: Config
) -> None:
    browser = _signed_in(client, stocked)
    csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get("/ui/users").text)
    assert csrf is not None
    before = _stored(config)
    for spelling in ("1.0", "+1", "%201", "1_0", ARABIC_DIGITS, "9" * 4000):
        answer = browser.post(
            f"/ui/refresh-tokens/{spelling}/revoke?user=alice", data={"csrf": csrf.group(1)}
        )
        assert answer.status_code == 400, (spelling[:40], answer.text[:300])
        assert 'class="error"' in answer.text
    assert _stored(config) == before


def test_racing_deletes_of_one_row_remove_it_once(
    client: TestClient, stocked: tuple[str, str], config: Config
) -> None:
    deletes = {
        "/admin/v1/ci-tokens/ci-a": "ci_tokens",
        "/admin/v1/personal-tokens/alice/laptop": "personal_tokens",
        "/admin/v1/federation-trusts/gha-a": "federation_trusts",
        "/admin/v1/users/alice": "users",
    }
    before = _stored(config)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for path in deletes:
            answers = list(
                pool.map(lambda p: client.delete(p, auth=stocked).status_code, [path] * 8)
            )
            assert sorted(answers) == [204] + [404] * 7, (path, answers)
        # Lists read meanwhile still answer.
        listed = list(
            pool.map(
                lambda p: client.get(p, auth=stocked).status_code,
                [
                    "/admin/v1/users",
                    "/admin/v1/ci-tokens",
                    "/admin/v1/personal-tokens",
                    "/admin/v1/ui-sessions",
                ]
                * 4,
            )
        )
        assert set(listed) == {200}
    after = _stored(config)
    assert len(after["federation_trusts"]) == len(before["federation_trusts"]) - 1
    assert _column(config, "SELECT name FROM users") == ["root"]
    # Revoked, not removed: the token's row stays, with the time it was revoked.
    assert (
        len(_column(config, "SELECT revoked_at FROM ci_tokens WHERE revoked_at IS NOT NULL")) == 1
    )
    assert _column(config, "SELECT revoked_at FROM ci_tokens WHERE revoked_at IS NULL") == []


def _column(config: Config, query: str) -> list[Any]:
    db = Database(config.database.url)
    try:
        with db.engine.connect() as conn:
            return [row[0] for row in conn.execute(text(query))]
    finally:
        db.dispose()

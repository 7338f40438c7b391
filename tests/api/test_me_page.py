"""Every person's own page: signing in as anyone, their groups and grants, their tokens.

A person who is not an admin signs in and lands on `/ui/me`; the admin pages
send them there (a GET) or refuse them (a POST) and change nothing. On their
page they see their groups and what the rules grant them, and make, list
and revoke their own tokens: the secret once, in the page, never in a URL.
Every form is refused without its CSRF token.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import LeakGuard
from tokenserver.store.db import Database

SERVICE = "registry"
ALICE_PW, ROOT_PW = "alice-pw-1", "root-pw-1"


@pytest.fixture
def people(add_user: Callable[..., str]) -> None:
    add_user("root", ROOT_PW, ("admin",))
    add_user("alice", ALICE_PW, ("dev", "qa"))


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html[:500]
    return found.group(1)


def _secret(html: str) -> str:
    found = re.search(r'<code id="secret">([^<]+)</code>', html)
    assert found is not None, html[:2000]
    return found.group(1)


def sign_in(client: TestClient, user: str, password: str, landing: str) -> TestClient:
    browser = TestClient(client.app, follow_redirects=False)
    login = browser.get("/ui/login")
    answer = browser.post(
        "/ui/login", data={"username": user, "password": password, "csrf": _csrf(login.text)}
    )
    assert answer.status_code == 303 and answer.headers["location"] == landing, answer.text
    return browser


def _tokens(database: Database) -> list[tuple[Any, ...]]:
    with database.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT * FROM personal_tokens ORDER BY id"))]


def test_a_person_signs_in_to_their_own_page_and_not_to_the_admin_pages(
    client: TestClient, people: None, database: Database
) -> None:
    alice = sign_in(client, "alice", ALICE_PW, "/ui/me")
    page = alice.get("/ui/me")
    assert page.status_code == 200
    assert "<code>dev</code>" in page.text and "<code>qa</code>" in page.text
    # Their namespace, explained: granted by the rule that gives users their own.
    assert "repository:alice/app" in page.text and "pull,push" in page.text
    assert 'href="/ui/users"' not in page.text
    csrf = _csrf(page.text)
    for path in ("/ui/users", "/ui/sessions", "/ui/ci-tokens", "/ui/audit", "/ui/keys",
                 "/ui/repositories", "/ui/users/root", "/ui/"):  # fmt: skip
        answer = alice.get(path, follow_redirects=True)
        assert answer.url.path == "/ui/me", path
    users_before = client.get("/admin/v1/users", auth=("root", ROOT_PW)).json()
    for path, form in (
        ("/ui/users", {"name": "mallory", "password": "x-pw-123456", "groups": "admin"}),
        ("/ui/users/alice/groups", {"groups": "admin"}),
        ("/ui/users/root/delete", {}),
        ("/ui/ci-tokens", {"name": "ci", "scopes": "repository:a/b:pull"}),
        ("/ui/sessions/end", {"user": "root"}),
    ):
        answer = alice.post(path, data={**form, "csrf": csrf})
        assert answer.status_code == 403 and "nothing was changed" in answer.text, path
    assert client.get("/admin/v1/users", auth=("root", ROOT_PW)).json() == users_before
    # Signing out works for anyone.
    assert alice.post("/ui/logout", data={"csrf": csrf}).status_code == 303
    assert alice.get("/ui/me").headers["location"] == "/ui/login"


def test_an_admin_lands_on_the_users_and_has_a_page_of_their_own(
    client: TestClient, people: None
) -> None:
    root = sign_in(client, "root", ROOT_PW, "/ui/users")
    assert 'href="/ui/me"' in root.get("/ui/users").text
    page = root.get("/ui/me")
    assert page.status_code == 200 and "<code>admin</code>" in page.text
    assert 'href="/ui/users"' in page.text


def test_the_page_explains_what_was_asked(client: TestClient, people: None) -> None:
    alice = sign_in(client, "alice", ALICE_PW, "/ui/me")
    page = alice.get(
        "/ui/me", params={"scope": "repository:bob/app:pull repository:alice/x:delete"}
    )
    assert page.status_code == 200
    rows = re.findall(
        r"<tr><td class=\"mono\">([^<]+)</td><td class=\"mono\">([^<]+)</td>", page.text
    )
    assert ("repository:bob/app:pull", "nothing") in rows
    assert ("repository:alice/x:delete", "delete") in rows
    for bad in ("nonsense", "a " * 11, "x" * 5000, "repository:\x00:pull", "repository:é:pull"):
        answer = alice.get("/ui/me", params={"scope": bad})
        assert answer.status_code == 400 and 'class="error"' in answer.text


def test_a_person_makes_uses_lists_and_revokes_their_own_tokens(
    client: TestClient,
    people: None,
    database: Database,
    leak_guard: LeakGuard,
    decode_token: Callable[[str], dict[str, Any]],
) -> None:
    alice = sign_in(client, "alice", ALICE_PW, "/ui/me")
    csrf = _csrf(alice.get("/ui/me").text)
    made = alice.post(
        "/ui/me/tokens",
        data={
            "csrf": csrf,
            "name": "laptop",
            "scopes": "repository:alice/*:pull,push",
            "ttl": "7d",
        },
    )
    # Rendered, not redirected: the secret is in no URL.
    assert made.status_code == 201 and "location" not in made.headers
    secret = leak_guard.add(_secret(made.text))
    assert secret.startswith("tspat_") and "-u alice --password-stdin" in made.text
    assert alice.get("/ui/me").text.count(secret) == 0
    got = client.get(
        "/token",
        params={"service": SERVICE, "scope": "repository:alice/app:pull,push,delete"},
        auth=("alice", secret),
    )
    assert got.status_code == 200
    (access,) = decode_token(got.json()["token"])["access"]
    assert sorted(access["actions"]) == ["pull", "push"]
    listed = alice.get("/ui/me").text
    assert "laptop" in listed and "testclient" in listed and "live" in listed
    # The token is alice's own, made by her: an admin sees it too.
    (entry,) = client.get("/admin/v1/personal-tokens", auth=("root", ROOT_PW)).json()
    assert (entry["owner"], entry["created_by"]) == ("alice", "alice")

    revoked = alice.post("/ui/me/tokens/laptop/revoke", data={"csrf": csrf})
    assert revoked.status_code == 303
    assert revoked.headers["location"] == "/ui/me?done=pat-revoked&name=laptop"
    assert "Personal token laptop revoked." in alice.get(revoked.headers["location"]).text
    assert (
        client.get("/token", params={"service": SERVICE}, auth=("alice", secret)).status_code == 401
    )
    again = alice.post("/ui/me/tokens/laptop/revoke", data={"csrf": csrf})
    assert again.status_code == 404 and 'class="error"' in again.text


def test_a_person_reaches_no_one_elses_tokens(
    client: TestClient, people: None, database: Database, leak_guard: LeakGuard
) -> None:
    made = client.post(
        "/admin/v1/personal-tokens",
        json={"user": "root", "name": "laptop", "scopes": ["repository:x/*:pull"], "ttl": 60},
        auth=("root", ROOT_PW),
    )
    leak_guard.add(made.json()["secret"])
    before = _tokens(database)
    alice = sign_in(client, "alice", ALICE_PW, "/ui/me")
    page = alice.get("/ui/me").text
    assert "laptop" not in page
    answer = alice.post("/ui/me/tokens/laptop/revoke", data={"csrf": _csrf(page)})
    assert answer.status_code == 404
    # Fields a form could add to act for another: ignored; the owner is the session's.
    answer = alice.post(
        "/ui/me/tokens",
        data={"csrf": _csrf(page), "name": "n", "scopes": "repository:alice/a:pull", "user": "root",
              "owner": "root"},
    )  # fmt: skip
    assert answer.status_code == 201
    leak_guard.add(_secret(answer.text))
    after = _tokens(database)
    assert after[: len(before)] == before and len(after) == len(before) + 1
    assert after[-1][1] == "alice"


BAD_FORMS = [
    ({"name": "", "scopes": "repository:alice/a:pull"}, 400),
    ({"name": "a b", "scopes": "repository:alice/a:pull"}, 400),
    ({"name": "a\x00b", "scopes": "repository:alice/a:pull"}, 400),
    ({"name": "n" * 300, "scopes": "repository:alice/a:pull"}, 400),
    ({"name": "n", "scopes": ""}, 400),
    ({"name": "n", "scopes": "nonsense"}, 400),
    ({"name": "n", "scopes": "admin:api:*"}, 400),
    ({"name": "n", "scopes": "repository:\u00e9/a:pull"}, 400),
    ({"name": "n", "scopes": " ".join(["repository:a/b:pull"] * 101)}, 400),
    ({"name": "n", "scopes": "repository:alice/a:pull", "ttl": "91d"}, 400),
    ({"name": "n", "scopes": "repository:alice/a:pull", "ttl": "soon"}, 400),
    ({"name": "n", "scopes": "repository:alice/a:pull", "ttl": "-1"}, 400),
    ({"name": "n", "scopes": "repository:alice/a:pull", "ttl": "9" * 400}, 400),
    ({"name": "taken", "scopes": "repository:alice/a:pull"}, 409),
    ({"name": "TAKEN", "scopes": "repository:alice/a:pull"}, 409),
]


def test_bad_forms_are_refused_with_the_page_and_nothing_stored(
    client: TestClient, people: None, database: Database, leak_guard: LeakGuard
) -> None:
    alice = sign_in(client, "alice", ALICE_PW, "/ui/me")
    csrf = _csrf(alice.get("/ui/me").text)
    made = alice.post(
        "/ui/me/tokens", data={"csrf": csrf, "name": "taken", "scopes": "repository:alice/a:pull"}
    )
    leak_guard.add(_secret(made.text))
    before = _tokens(database)
    for form, status in BAD_FORMS:
        answer = alice.post("/ui/me/tokens", data={"csrf": csrf, **form})
        assert answer.status_code == status, (repr(form)[:100], answer.text[:300])
        assert 'id="secret"' not in answer.text
        if answer.headers["content-type"].startswith("text/html"):
            assert 'class="error"' in answer.text
        else:  # refused before the page: a NUL in a form is no one's input
            assert answer.json()["error"] == "invalid_request"
    assert _tokens(database) == before


def test_every_form_needs_its_csrf_token(
    client: TestClient, people: None, database: Database, leak_guard: LeakGuard
) -> None:
    alice = sign_in(client, "alice", ALICE_PW, "/ui/me")
    csrf = _csrf(alice.get("/ui/me").text)
    made = alice.post(
        "/ui/me/tokens", data={"csrf": csrf, "name": "kept", "scopes": "repository:alice/a:pull"}
    )
    leak_guard.add(_secret(made.text))
    before = _tokens(database)
    create = {"name": "new", "scopes": "repository:alice/a:pull"}
    for path, form in (("/ui/me/tokens", create), ("/ui/me/tokens/kept/revoke", {})):
        for forged in ({}, {"csrf": "forged"}, {"csrf": csrf + "x"}, {"csrf": ""}):
            answer = alice.post(path, data={**form, **forged})
            assert answer.status_code == 403 and "CSRF" in answer.text, (path, forged)
        # No session at all: sign in first.
        stranger = TestClient(client.app, follow_redirects=False)
        assert stranger.post(path, data={**form, "csrf": csrf}).status_code == 401
    assert _tokens(database) == before


def test_a_person_who_changes_is_signed_out(client: TestClient, people: None) -> None:
    alice = sign_in(client, "alice", ALICE_PW, "/ui/me")
    answer = client.put(
        "/admin/v1/users/alice/disabled", json={"disabled": True}, auth=("root", ROOT_PW)
    )
    assert answer.status_code == 200
    assert alice.get("/ui/me").headers["location"] == "/ui/login"


def test_a_ci_token_still_cannot_sign_in(
    client: TestClient, people: None, leak_guard: LeakGuard
) -> None:
    made = client.post(
        "/admin/v1/ci-tokens",
        json={"name": "ci-app", "scopes": ["repository:a/b:pull"], "ttl": 60},
        auth=("root", ROOT_PW),
    )
    secret = leak_guard.add(made.json()["secret"])
    browser = TestClient(client.app, follow_redirects=False)
    login = browser.get("/ui/login")
    answer = browser.post(
        "/ui/login", data={"username": "ci-app", "password": secret, "csrf": _csrf(login.text)}
    )
    assert answer.status_code == 403 and "ts_session" not in browser.cookies


def test_an_admin_sees_and_revokes_a_persons_tokens_on_their_user_page(
    client: TestClient, people: None, database: Database, leak_guard: LeakGuard
) -> None:
    alice = sign_in(client, "alice", ALICE_PW, "/ui/me")
    made = alice.post(
        "/ui/me/tokens",
        data={"csrf": _csrf(alice.get("/ui/me").text), "name": "laptop",
              "scopes": "repository:alice/a:pull"},
    )  # fmt: skip
    secret = leak_guard.add(_secret(made.text))
    root = sign_in(client, "root", ROOT_PW, "/ui/users")
    page = root.get("/ui/users/alice").text
    assert "laptop" in page and secret not in page
    path = "/ui/users/alice/personal-tokens/laptop/revoke"
    before = _tokens(database)
    assert root.post(path, data={"csrf": "forged"}).status_code == 403
    assert alice.post(path, data={"csrf": _csrf(alice.get("/ui/me").text)}).status_code == 403
    assert _tokens(database) == before
    done = root.post(path, data={"csrf": _csrf(page)})
    assert done.status_code == 303
    assert done.headers["location"] == "/ui/users/alice?done=pat-revoked&name=laptop"
    assert "revoked" in root.get("/ui/users/alice").text
    again = root.post(path, data={"csrf": _csrf(page)})
    assert again.status_code == 404 and 'class="error"' in again.text
    answer = client.get("/token", params={"service": SERVICE}, auth=("alice", secret))
    assert answer.status_code == 401


HOSTILE_PARTS = ["x" * 20_000, "lap%00top", "l%C3%A4ptop", "%FF%FE", "..%2F..%2Fadmin"]


def test_hostile_paths_and_queries_answer_4xx_and_change_nothing(
    client: TestClient, people: None, database: Database, leak_guard: LeakGuard
) -> None:
    """The person's revoke, the admin's revoke of a person's token and the rules' explanation,
    with huge, NUL, non-ASCII and undecodable parts: a 4xx or the page, never a 500."""
    alice = sign_in(client, "alice", ALICE_PW, "/ui/me")
    csrf = _csrf(alice.get("/ui/me").text)
    made = alice.post(
        "/ui/me/tokens", data={"csrf": csrf, "name": "laptop", "scopes": "repository:alice/a:pull"}
    )
    leak_guard.add(_secret(made.text))
    root = sign_in(TestClient(client.app, follow_redirects=False), "root", ROOT_PW, "/ui/users")
    root_csrf = _csrf(root.get("/ui/users").text)
    before = _tokens(database)
    for part in HOSTILE_PARTS:
        answer = alice.post(f"/ui/me/tokens/{part}/revoke", data={"csrf": csrf})
        assert 400 <= answer.status_code < 500, (part[:40], answer.status_code)
        for path in (
            f"/ui/users/alice/personal-tokens/{part}/revoke",
            f"/ui/users/{part}/personal-tokens/laptop/revoke",
        ):
            answer = root.post(path, data={"csrf": root_csrf})
            assert 400 <= answer.status_code < 500, (path[:60], answer.status_code)
        shown = alice.get(f"/ui/me?scope={part}")
        assert shown.status_code in (200, 400), (part[:40], shown.status_code)
    assert _tokens(database) == before


def test_racing_revokes_on_the_page_revoke_once(
    client: TestClient, people: None, database: Database, leak_guard: LeakGuard
) -> None:
    import concurrent.futures

    alice = sign_in(client, "alice", ALICE_PW, "/ui/me")
    csrf = _csrf(alice.get("/ui/me").text)
    made = alice.post(
        "/ui/me/tokens", data={"csrf": csrf, "name": "laptop", "scopes": "repository:alice/a:pull"}
    )
    leak_guard.add(_secret(made.text))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda _: alice.post("/ui/me/tokens/laptop/revoke", data={"csrf": csrf}),
                range(8),
            )
        )
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(303) == 1 and all(s == 404 for s in statuses if s != 303), statuses
    with database.engine.connect() as conn:
        revoked = conn.execute(
            text("SELECT count(*) FROM personal_tokens WHERE revoked_at IS NOT NULL")
        ).scalar_one()
    assert revoked == 1

"""Every page of the web UI loads without a 404: each `href` and `src` it names answers 200.

A page without an icon of its own makes every browser ask for /favicon.ico,
which nothing serves: so each page must also name its icon. The pages are
found by following the links, signed in as an admin, from /ui/; the sign-in
page and the refusal page are seen signed out.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from fastapi.testclient import TestClient

ADMIN = ("root", "root-pw-1")


class _References(HTMLParser):
    """The `href` and `src` values of a page, and whether it names an icon."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.icon = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.found += [v for k, v in attrs if k in ("href", "src") and v is not None]
        if tag == "link" and "icon" in (values.get("rel") or "").split():
            self.icon = True


def _references(path: str, html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    assert parser.icon, f"{path} names no icon: browsers will ask for /favicon.ico"
    return [urljoin(f"http://testserver{path}", ref) for ref in parser.found]


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html[:500]
    return found.group(1)


def test_no_page_names_what_is_not_there(client: TestClient, add_user: Callable[..., str]) -> None:
    add_user(ADMIN[0], ADMIN[1], ("admin",))
    add_user("alice", "alice-pw-1")
    browser = TestClient(client.app, follow_redirects=False)
    referenced: dict[str, str] = {}  # what a page names -> the first page naming it

    def read(path: str, answer_html: str) -> None:
        for ref in _references(path, answer_html):
            referenced.setdefault(ref, path)

    # Signed out: the sign-in page, and the page refusing a form without a session.
    login = browser.get("/ui/login")
    assert login.status_code == 200
    read("/ui/login", login.text)
    refused = browser.post("/ui/users", data={"name": "x"})
    assert refused.status_code == 401 and 'id="refused"' in refused.text
    read("/ui/users", refused.text)

    signed_in = browser.post(
        "/ui/login", data={"username": ADMIN[0], "password": ADMIN[1], "csrf": _csrf(login.text)}
    )
    assert signed_in.status_code == 303, signed_in.text
    # A CI token, so its page lists one; the page showing its secret is a page too.
    made = browser.post(
        "/ui/ci-tokens",
        data={
            "name": "ci-push",
            "scopes": "repository:root/app:pull,push",
            "ttl": "1d",
            "csrf": _csrf(browser.get("/ui/users").text),
        },
    )
    assert made.status_code == 201, made.text
    read("/ui/ci-tokens", made.text)

    pages: list[str] = []
    queue = ["http://testserver/ui/"]
    seen = set(queue)
    while queue:
        url = queue.pop()
        answer = browser.get(url)
        if answer.status_code == 303:  # /ui/ itself: to the first page
            url = urljoin(url, answer.headers["location"])
            seen.add(url)
            answer = browser.get(url)
        assert answer.status_code == 200, f"{url}: {answer.status_code}"
        if not answer.headers["content-type"].startswith("text/html"):
            continue
        path = url.removeprefix("http://testserver")
        pages.append(path)
        for ref in _references(path, answer.text):
            referenced.setdefault(ref, path)
            parts = urlsplit(ref)
            is_page = parts.path.startswith("/ui/") and not parts.path.startswith("/ui/static/")
            if is_page and ref not in seen:
                seen.add(ref)
                queue.append(ref)

    # Every page the header links to, and a user's own page, were read.
    for expected in (
        "/ui/users",
        "/ui/users/alice",
        "/ui/sessions",
        "/ui/ci-tokens",
        "/ui/audit",
        "/ui/repositories",
        "/ui/keys",
        "/ui/me",
    ):
        assert expected in pages, pages
    missing = {}
    for ref, named_by in referenced.items():
        answer = browser.get(ref)
        if answer.status_code != 200:
            missing[ref] = f"{answer.status_code}, named by {named_by}"
    assert not missing
    assert "http://testserver/ui/static/favicon.svg" in referenced
    icon = browser.get("/ui/static/favicon.svg")
    assert icon.headers["content-type"].startswith("image/svg+xml")

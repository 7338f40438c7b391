"""Every probe of the attack review, against a real token-server process.

Each answer must be the spec's 4xx (RFC 6749 §5.2 JSON), never a 5xx; the
process must log no traceback and no error; memory must stay bounded; and
the users stored before the probes must be exactly as they were after. A
local OIDC issuer (one RSA and one EC key) stands behind one trust, for the
forged ID tokens.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.support.oidc import OIDCIssuer, SigningKey
from tests.support.tokenserver import TokenServer
from tests.support.trickle import TricklingServer
from tokenserver.jws import CompactSigner
from tokenserver.keys import load_keys
from tokenserver.store.db import Database
from tokenserver.store.users import UserInfo, UserStore

SERVICE = "registry"
MB = 1024 * 1024


TRUST = "gha-hostile"
AUDIENCE = "https://registry.example"


@pytest.fixture(scope="module")
def oidc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OIDCIssuer]:
    with OIDCIssuer(tmp_path_factory.mktemp("hostile-oidc")) as issuer:
        issuer.keys.append(SigningKey("ES256"))  # beside its RSA key
        yield issuer


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, oidc: OIDCIssuer, real_peer: None
) -> Iterator[TokenServer]:
    workdir = tmp_path_factory.mktemp("hostile")
    trust = {
        "name": TRUST,
        "issuer": oidc.url,
        "audience": AUDIENCE,
        "ca_file": str(oidc.ca_file),
        "claims": {"repository": "team/app"},
        "scopes": ["repository:team/app:pull"],
    }
    ts = TokenServer(workdir, extra={"users": {"bcrypt_cost": 4}, "federation": [trust]})
    ts.add_user("root", "root-pw-1", "admin")
    ts.add_user("alice", "alice-pw-1", "dev")
    with ts:
        yield ts


@pytest.fixture(scope="module")
def stored_before(server: TokenServer) -> list[UserInfo]:
    users = _users(server)
    assert [(u.name, u.groups) for u in users] == [("alice", ("dev",)), ("root", ("admin",))]
    return users


def _users(server: TokenServer) -> list[UserInfo]:
    db = Database(f"sqlite:///{server.workdir / 'tokenserver.db'}")
    try:
        return UserStore(db).list()
    finally:
        db.dispose()


def _basic(raw: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


ROOT = ("root", "root-pw-1")
LONG = "a" * 20_000

QUERY_PROBES: list[tuple[str, str, dict[str, str], int]] = [
    ("GET", "/token", {}, 400),
    ("GET", "/token?service=" + LONG, {}, 400),
    ("GET", "/token?service=%C2%B2", {}, 400),
    ("GET", "/token?service=%FF%FE", {}, 400),
    ("GET", "/token?service=reg%00istry", {}, 400),
    ("GET", "/token?service=registry&service=registry", {}, 400),
    ("GET", "/token?service=registry&scope=" + "%F0%9F%92%A9", {}, 400),
    ("GET", "/token?service=registry&scope=repository:a/b:pull%00", {}, 400),
    ("GET", "/token?service=registry&scope=repository:" + "a/" * 5000 + "b:pull", {}, 400),
    (
        "GET",
        "/token?service=registry&" + "&".join(f"scope=repository:a/b{i}:pull" for i in range(150)),
        {},
        400,
    ),
    ("GET", "/token?service=registry", {"Authorization": "Basic !!!"}, 400),
    ("GET", "/token?service=registry", _basic(b"\xff\xfe:pw"), 400),
    ("GET", "/token?service=registry", _basic(b"no-colon"), 400),
    ("GET", "/token?service=registry", _basic(b":no-user"), 400),
    ("GET", "/token?service=registry", _basic(b"ro\x00ot:pw"), 400),
    ("GET", "/token?service=registry", _basic(LONG.encode() + b":pw"), 401),
    ("GET", "/token?service=registry", _basic("rööt:pw".encode()), 401),
    ("GET", "/token?service=registry", {"Authorization": "Bearer x"}, 400),
    ("GET", "/token?service=registry", {"Authorization": "Basic"}, 400),
    ("GET", "/token?service=registry&account=alice", _basic(b"root:root-pw-1"), 400),
    ("GET", "/token?service=registry&offline_token=true", {}, 401),
    ("GET", "/admin/v1/users/" + LONG, _basic(b"root:root-pw-1"), 404),
    ("GET", "/admin/v1/users/r%C3%B6%C3%B6t", _basic(b"root:root-pw-1"), 404),
    ("GET", "/admin/v1/users/%00", _basic(b"root:root-pw-1"), 404),
    ("DELETE", "/admin/v1/refresh-tokens/" + "9" * 5000, _basic(b"root:root-pw-1"), 400),
    ("DELETE", "/admin/v1/refresh-tokens/%C2%B2", _basic(b"root:root-pw-1"), 400),
    ("DELETE", "/admin/v1/refresh-tokens/9223372036854775808", _basic(b"root:root-pw-1"), 400),
    ("GET", "/admin/v1/audit?limit=" + "9" * 5000, _basic(b"root:root-pw-1"), 400),
    ("GET", "/admin/v1/audit?since=yesterday", _basic(b"root:root-pw-1"), 400),
    ("GET", "/admin/v1/audit?since=9999-99-99T00:00:00Z", _basic(b"root:root-pw-1"), 400),
    ("GET", "/admin/v1/audit?outcome=%C2%B2", _basic(b"root:root-pw-1"), 400),
    ("GET", "/admin/v1/audit?action=" + "a" * 100, _basic(b"root:root-pw-1"), 400),
    ("GET", "/admin/v1/ui-sessions?user=" + LONG, _basic(b"root:root-pw-1"), 400),
    ("GET", "/admin/v1/ui-sessions?user=ro%00ot", _basic(b"root:root-pw-1"), 404),
    ("DELETE", "/admin/v1/ui-sessions", _basic(b"root:root-pw-1"), 400),
    ("DELETE", "/admin/v1/ui-sessions?user=%00", _basic(b"root:root-pw-1"), 404),
    ("DELETE", "/admin/v1/ui-sessions/" + "9" * 5000, _basic(b"root:root-pw-1"), 400),
    ("DELETE", "/admin/v1/ui-sessions/9223372036854775808", _basic(b"root:root-pw-1"), 400),
    ("DELETE", "/admin/v1/ui-sessions/%C2%B2", _basic(b"root:root-pw-1"), 400),
    ("DELETE", "/admin/v1/ui-sessions/%D9%A1%D9%A2", _basic(b"root:root-pw-1"), 400),
    ("DELETE", "/admin/v1/ui-sessions/4611686018427387904", _basic(b"root:root-pw-1"), 404),
    ("GET", "/ui/sessions", {"Cookie": "ts_session=forged"}, 303),
    ("GET", "/ui/users", {"Cookie": "ts_session=" + "x" * 5000}, 303),
    ("GET", "/ui/audit?page=" + "9" * 5000, {"Cookie": "ts_session=forged"}, 303),
    ("GET", "/ui/users/%00", {}, 303),
]


@pytest.mark.parametrize(("method", "path", "headers", "status"), QUERY_PROBES)
def test_query_and_header_probes(
    server: TokenServer,
    stored_before: list[UserInfo],
    method: str,
    path: str,
    headers: dict[str, str],
    status: int,
) -> None:
    answer = httpx.request(method, server.url + path, headers=headers, timeout=10)
    assert answer.status_code == status, answer.text
    if status == 303:  # the web page sends a stranger to sign in
        assert answer.headers["location"] == "/ui/login"
        return
    body = answer.json()
    assert body["error"] and body["error_description"]


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
GOOD_FORM = "grant_type=password&service=registry&client_id=t&username=alice&password=alice-pw-1"

POST_PROBES: list[tuple[str, bytes, dict[str, str], int]] = [
    ("/token", GOOD_FORM.encode(), {"Content-Type": "application/json"}, 400),
    ("/token", b"grant_type=%ZZ&service=registry", FORM, 400),
    ("/token", b"grant_type=password&service=registry&client_id=t&username=\xff", FORM, 400),
    ("/token", b"grant_type=password&service=registry&client_id=t&username=a%00b", FORM, 400),
    ("/token", b"grant_type=password&service=registry&client_id=t&username=alice", FORM, 400),
    ("/token", b"grant_type=magic&service=registry&client_id=t", FORM, 400),
    (
        "/token",
        b"grant_type=refresh_token&service=registry&client_id=t&refresh_token=" + b"r" * 50_000,
        FORM,
        400,
    ),
    ("/token", b"x=" + b"y" * (70 * 1024), FORM, 413),
    ("/token", b"&" * 60_000, FORM, 400),
    (
        "/admin/v1/users",
        b'{"name": "x", "password": "p"}',
        {"Content-Type": "application/json"},
        401,
    ),
    (
        "/admin/v1/users",
        b"[" * 60_000,
        {"Content-Type": "application/json", **_basic(b"root:root-pw-1")},
        400,
    ),
    (
        "/admin/v1/users",
        b'{"name": "\\u0000", "password": "pw"}',
        {"Content-Type": "application/json", **_basic(b"root:root-pw-1")},
        400,
    ),
    (
        "/admin/v1/users",
        b'{"name": "x", "password": "pw", "groups": [' + b'"g",' * 5000 + b'"g"]}',
        {"Content-Type": "application/json", **_basic(b"root:root-pw-1")},
        400,
    ),
    (
        "/admin/v1/users",
        b'{"name": "x", "password": "p\\ud800"}',
        {"Content-Type": "application/json", **_basic(b"root:root-pw-1")},
        400,
    ),
    (
        "/admin/v1/ci-tokens",
        b'{"name": "c", "scopes": ["admin:api:*"], "ttl": 60}',
        {"Content-Type": "application/json", **_basic(b"root:root-pw-1")},
        400,
    ),
    (
        "/admin/v1/ci-tokens",
        b'{"name": "c", "scopes": ["repository:a/b:pull"], "ttl": ' + b"9" * 5000 + b"}",
        {"Content-Type": "application/json", **_basic(b"root:root-pw-1")},
        400,
    ),
    (
        "/admin/v1/ci-tokens",
        b'{"name": "c", "scopes": ["repository:a/b:pull"], "ttl": true}',
        {"Content-Type": "application/json", **_basic(b"root:root-pw-1")},
        400,
    ),
    # Keyless CI: token exchanges and trusts, malformed every way.
    *(
        (
            "/token",
            b"grant_type=urn:ietf:params:oauth:grant-type:token-exchange&service=registry"
            b"&subject_token_type=urn:ietf:params:oauth:token-type:id_token&subject_token=" + token,
            {"Content-Type": "application/x-www-form-urlencoded"},
            400,
        )
        for token in (
            b"eyJ" + b"A" * 60_000 + b".eyJ.x",
            b"eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovLzEyNy4wLjAuMTo5In0.",
            b"eyJ%C3%A9.eyJ%E4%B8%AD.%00",
            b"eyJ%FF.eyJ.x",
            b"eyJ.eyJ.",
            b"..",
            b"",
        )
    ),
    (
        "/admin/v1/federation-trusts",
        b'{"name": "t", "issuer": "https://127.0.0.1:9", "audience": "a", "scopes": ["admin:*:*"]}',
        {"Content-Type": "application/json", **_basic(b"root:root-pw-1")},
        400,
    ),
    (
        "/admin/v1/federation-trusts",
        b'{"name": "t", "issuer": "file:///etc/passwd", "audience": "a",'
        b' "scopes": ["repository:a/b:pull"]}',
        {"Content-Type": "application/json", **_basic(b"root:root-pw-1")},
        400,
    ),
    (
        "/admin/v1/federation-trusts",
        b'{"name": "t\\u0000", "issuer": "https://127.0.0.1:9", "audience": "a",'
        b' "scopes": ["repository:a/b:pull"], "claims": {"x\\ud800": "y"}}',
        {"Content-Type": "application/json", **_basic(b"root:root-pw-1")},
        400,
    ),
    (
        "/admin/v1/federation-trusts",
        b'{"name": "t", "issuer": "https://127.0.0.1:9", "audience": "a",'
        b' "scopes": ["repository:a/b:pull"], "claims": {"ref": "/(a+)+$[/"}}',
        {"Content-Type": "application/json", **_basic(b"root:root-pw-1")},
        400,
    ),
    (
        "/admin/v1/federation-trusts",
        b'{"name": "t", "issuer": "https://127.0.0.1:9", "audience": "a",'
        b' "scopes": ["repository:a/b:pull"], "max_age": 1e400}',
        {"Content-Type": "application/json", **_basic(b"root:root-pw-1")},
        400,
    ),
    # Trust fields Python's `re` and `ssl` choked on (OverflowError, RecursionError,
    # a CA file accepted and then failing every login).
    *(
        (
            "/admin/v1/federation-trusts",
            json.dumps(
                {
                    "name": "t",
                    "issuer": "https://127.0.0.1:9",
                    "audience": "a",
                    "scopes": ["repository:a/b:pull"],
                    **fields,
                }
            ).encode(),
            {"Content-Type": "application/json", **_basic(b"root:root-pw-1")},
            400,
        )
        for fields in (
            {"claims": {"ref": "/a{99999999999}/"}},
            {"claims": {"ref": "/" + "(" * 500 + "a" + ")" * 500 + "/"}},
            {"claims": {"ref": "/(?<!x)y/"}},
            {"ca_file": "/etc/passwd"},
            {"ca_file": "/nonexistent/ca.pem"},
            {"ca_file": "/etc"},
        )
    ),
    # The web page: no session, no or forged CSRF tokens, hostile forms.
    ("/ui/users", b"name=evil&password=pw-evil-1&csrf=x", FORM, 401),
    ("/ui/ci-tokens", b"name=evil&scopes=admin:api:*&csrf=x", FORM, 401),
    ("/ui/login", b"username=root&password=root-pw-1&csrf=x", FORM, 403),
    ("/ui/login", b"username=root&password=root-pw-1", FORM, 403),
    ("/ui/login", b"username=" + b"r" * 70_000, FORM, 413),
    ("/ui/login", b"username=%FF&password=x&csrf=x", FORM, 400),
    ("/ui/logout", b"csrf=x", FORM, 401),
    ("/ui/users/" + "a" * 5000 + "/delete", b"csrf=x", FORM, 401),
    ("/ui/sessions/9223372036854775808/end", b"csrf=x", FORM, 401),
    ("/ui/sessions/end", b"user=root&csrf=x", FORM, 401),
]


@pytest.mark.parametrize(("path", "body", "headers", "status"), POST_PROBES)
def test_post_probes(
    server: TokenServer,
    stored_before: list[UserInfo],
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
) -> None:
    answer = httpx.post(server.url + path, content=body, headers=headers, timeout=10)
    assert answer.status_code == status, answer.text
    if answer.headers["content-type"].startswith("text/html"):
        assert "nothing was changed" in answer.text or "Sign in" in answer.text
    else:
        assert answer.json()["error"]


@pytest.fixture(scope="module")
def web_page(server: TokenServer) -> Iterator[tuple[httpx.Client, str]]:
    """A client signed in to the web page as root, and its session's CSRF token."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        form = client.get("/ui/login")
        answer = client.post(
            "/ui/login",
            data={"username": "root", "password": "root-pw-1", "csrf": _csrf(form.text)},
        )
        assert answer.status_code == 303, answer.text
        yield client, _csrf(client.get("/ui/users").text)


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match is not None, html[:500]
    return match.group(1)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/ui/audit?since=2900000d"),
        ("GET", "/ui/audit?since=999999999999w"),
        ("GET", "/ui/audit?since=soon"),
        ("POST", "/ui/refresh-tokens/9223372036854775808/revoke?user=alice"),
        ("POST", "/ui/refresh-tokens/" + "9" * 4000 + "/revoke?user=alice"),
        ("POST", "/ui/refresh-tokens/0/revoke?user=alice"),
        ("POST", "/ui/refresh-tokens/-1/revoke?user=alice"),
    ],
)
def test_web_page_probes_of_a_signed_in_admin(
    web_page: tuple[httpx.Client, str], stored_before: list[UserInfo], method: str, path: str
) -> None:
    client, csrf = web_page
    answer = client.request(method, path, data={"csrf": csrf} if method == "POST" else None)
    assert answer.status_code == 400, answer.text
    if answer.headers["content-type"].startswith("text/html"):
        assert 'class="error"' in answer.text
    else:
        assert answer.json()["error"] == "invalid_request"


def test_signed_in_page_probes(server: TokenServer, stored_before: list[UserInfo]) -> None:
    """Ids and names no session has, posted with a real session and its CSRF token."""
    with httpx.Client(base_url=server.url, timeout=10) as browser:
        login = browser.get("/ui/login")
        signed = browser.post(
            "/ui/login",
            data={"username": "root", "password": "root-pw-1", "csrf": _csrf(login.text)},
        )
        assert signed.status_code == 303
        csrf = _csrf(browser.get("/ui/sessions").text)
        for session_id, status in (
            ("9223372036854775808", 400),
            ("18446744073709551616", 400),
            ("9" * 5000, 400),
            ("%C2%B2", 400),
            ("%D9%A1", 400),
            ("-1", 400),
            ("1.5", 400),
            ("%00", 400),
            ("4611686018427387904", 404),
        ):
            answer = browser.post(f"/ui/sessions/{session_id}/end", data={"csrf": csrf})
            assert answer.status_code == status, (session_id, answer.text)
        for query, status in (("%00", 404), ("a%3Ab", 404), ("r%C3%B6%C3%B6t", 200)):
            assert browser.get(f"/ui/sessions?user={query}").status_code == status
        for user, status in (("\x00", 400), ("a:b", 404), ("x" * 300, 404), ("rööt", 303)):
            answer = browser.post("/ui/sessions/end", data={"csrf": csrf, "user": user})
            assert answer.status_code == status, (user, answer.text)
        forged = browser.post("/ui/sessions/1/end", data={"csrf": "forged"})
        assert forged.status_code == 403
        assert browser.post("/ui/logout", data={"csrf": csrf}).status_code == 303


def test_parallel_updates_and_deletes_of_one_user(
    server: TokenServer, stored_before: list[UserInfo]
) -> None:
    """Racing admin changes of one user end as done / gone / conflict, never a 500."""
    seen: dict[int, int] = {}
    with httpx.Client(base_url=server.url, auth=ROOT, timeout=30) as client:
        for round_ in range(3):
            name = f"racer{round_}"
            created = client.post("/admin/v1/users", json={"name": name, "password": "pw-race-1"})
            assert created.status_code == 201, created.text

            def hit(i: int, name: str = name) -> int:
                kind = i % 4
                if kind == 0:
                    r = client.put(f"/admin/v1/users/{name}/groups", json={"groups": [f"g{i}"]})
                elif kind == 1:
                    r = client.put(
                        f"/admin/v1/users/{name}/disabled", json={"disabled": i % 8 == 1}
                    )
                elif kind == 2:
                    r = client.put(f"/admin/v1/users/{name}/password", json={"password": f"p-{i}"})
                else:
                    r = client.delete(f"/admin/v1/users/{name}")
                return r.status_code

            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                for status in pool.map(hit, range(60)):
                    seen[status] = seen.get(status, 0) + 1
            assert client.get(f"/admin/v1/users/{name}").status_code == 404
    assert set(seen) <= {200, 204, 404, 409}, seen
    assert seen.get(404, 0) > 0 and (seen.get(200, 0) + seen.get(204, 0)) > 0


def test_parallel_creation_of_one_ci_token_name_makes_one(
    server: TokenServer, stored_before: list[UserInfo]
) -> None:
    body = {"name": "ci-race", "scopes": ["repository:race/*:pull"], "ttl": 600}
    with httpx.Client(base_url=server.url, auth=ROOT, timeout=30) as client:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = sorted(
                pool.map(
                    lambda _: client.post("/admin/v1/ci-tokens", json=body).status_code, range(8)
                )
            )
        assert statuses == [201] + [409] * 7
        live = [t for t in client.get("/admin/v1/ci-tokens").json() if t["name"] == "ci-race"]
        assert [t["state"] for t in live] == ["live"]


def test_parallel_creation_of_one_trust_name_makes_one(
    server: TokenServer, stored_before: list[UserInfo]
) -> None:
    body = {
        "name": "gha-race",
        "issuer": "https://127.0.0.1:9/race",
        "audience": "registry",
        "scopes": ["repository:race/*:pull"],
    }
    with httpx.Client(base_url=server.url, auth=ROOT, timeout=30) as client:
        spellings = ["gha-race", "GHA-race", "gha-RACE", "Gha-Race"] * 2
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = sorted(
                pool.map(
                    lambda name: (
                        client.post(
                            "/admin/v1/federation-trusts", json=body | {"name": name}
                        ).status_code
                    ),
                    spellings,
                )
            )
        assert statuses == [201] + [409] * 7
        names = [t["name"] for t in client.get("/admin/v1/federation-trusts").json()]
        (made,) = [n for n in names if n.lower() == "gha-race"]
        assert client.delete(f"/admin/v1/federation-trusts/{made}").status_code == 204


def _raw(
    server: TokenServer, head: bytes, body: bytes = b"", *, close: bool = True
) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(head + body)
    if close:
        sock.close()
    return sock


def test_a_client_gone_mid_body_is_one_info_line(
    server: TokenServer, stored_before: list[UserInfo]
) -> None:
    offset = len(server.log_text())
    for _ in range(20):
        _raw(
            server,
            b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 5000\r\n\r\n",
            b"grant_type=password&service=registry",
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        entries = [
            json.loads(line)
            for line in server.log_text()[offset:].splitlines()
            if line.startswith("{")
        ]
        gone = [e for e in entries if e.get("msg") == "client disconnected"]
        if len(gone) >= 20:
            break
        time.sleep(0.1)
    assert len(gone) == 20 and all(e["level"] == "info" for e in gone)
    access = [e for e in entries if e.get("msg") == "request" and e.get("path") == "/token"]
    assert [e["status"] for e in access] == [499] * 20
    assert not [e for e in entries if e["level"] in ("error", "critical") or "exc" in e]


def _stream_body(server: TokenServer, head: bytes, total: int) -> tuple[int, int]:
    """Send `head` and up to `total` body bytes; (status answered, bytes we managed to send)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sent = 0
    try:
        sock.sendall(head)
        chunk = b"\0" * MB
        try:
            while sent < total:
                sent += sock.send(chunk[: min(MB, total - sent)])
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        answer = b""
        try:
            while b"\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except (ConnectionResetError, TimeoutError):
            pass
    finally:
        sock.close()
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0, sent


def test_a_200_mb_anonymous_admin_post_is_refused_unread(
    server: TokenServer, stored_before: list[UserInfo]
) -> None:
    start = server.rss_bytes()
    total = 200 * MB
    head = (
        b"POST /admin/v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % total
    )
    status, sent = _stream_body(server, head, total)
    assert status == 401
    assert sent < total, "the server read the whole body before refusing it"
    authed = head.replace(
        b"Host: x\r\n", b"Host: x\r\nAuthorization: Basic cm9vdDpyb290LXB3LTE=\r\n"
    )
    status, sent = _stream_body(server, authed, total)
    assert status == 413 and sent < total
    chunked = (
        b"POST /admin/v1/users HTTP/1.1\r\nHost: x\r\nAuthorization: Basic cm9vdDpyb290LXB3LTE=\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(chunked)
        piece = b"%x\r\n%s\r\n" % (MB, b"[" * MB)
        try:
            for _ in range(200):
                sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = sock.recv(65536)
    except ConnectionResetError:
        answer = b""
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 413")
    assert server.rss_bytes() - start < 50 * MB


# The 5xx answers probes mean to cause: an issuer whose keys cannot be had is a
# 503 (the client retries), on /token only. Any other 5xx is a failure.
INTENDED_503: list[str] = []


def _wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_trickling_jwks_uri_holds_no_one_up(
    server: TokenServer, stored_before: list[UserInfo], tmp_path: Path
) -> None:
    """A trust whose `jwks_uri` sends a byte a second: its logins are 503 in time, others go on."""
    deadline = 5.0  # the README's, for a whole fetch of an issuer's keys
    with TricklingServer(tmp_path / "trickle", interval=1.0, limit=40) as jwks:
        issuer = f"https://127.0.0.1:{jwks.port}"
        trust = {
            "name": "gha-trickle",
            "issuer": issuer,
            "audience": SERVICE,
            "jwks_uri": jwks.url,
            "ca_file": str(jwks.ca_file),
            "scopes": ["repository:trickle/*:pull"],
        }
        key = SigningKey()
        now = int(time.time())
        claims = {"iss": issuer, "aud": SERVICE, "sub": "x", "iat": now, "exp": now + 300}
        id_token = jwt.encode(claims, key.private, algorithm=key.alg, headers={"kid": key.kid})

        def id_login(_: int) -> tuple[int, float, str | None]:
            started = time.monotonic()
            got = httpx.get(
                f"{server.url}/token",
                params={"service": SERVICE, "scope": "repository:trickle/app:pull"},
                auth=("gha-trickle", id_token),
                timeout=4 * deadline,
            )
            return got.status_code, time.monotonic() - started, got.headers.get("retry-after")

        with httpx.Client(base_url=server.url, auth=ROOT, timeout=30) as admin:
            assert admin.post("/admin/v1/federation-trusts", json=trust).status_code == 201
            try:
                with concurrent.futures.ThreadPoolExecutor(20) as pool:
                    logins = [pool.submit(id_login, i) for i in range(20)]
                    assert _wait_for(lambda: jwks.trickling > 0, 10)
                    alice = httpx.get(
                        f"{server.url}/token",
                        params={"service": SERVICE},
                        auth=("alice", "alice-pw-1"),
                        timeout=2 * deadline,
                    )
                    assert alice.status_code == 200, alice.text
                    assert jwks.trickling > 0, "answered only once the fetch was over"
                    for login in logins:
                        status, elapsed, retry_after = login.result()
                        if status == 503:
                            INTENDED_503.append("/token")
                        assert status == 503 and retry_after, (status, retry_after)
                        assert elapsed < 3 * deadline, elapsed
            finally:
                assert admin.delete("/admin/v1/federation-trusts/gha-trickle").status_code == 204


# -- forged tokens: an alg its key cannot verify, times that are no numbers ----------------

EXCHANGE = {
    "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
    "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
    "service": SERVICE,
}
# What each way in answers a wrong ID token, as it answers a wrong password.
WRONG_ID_TOKEN = {"basic": (401, "unauthorized"), "password": (400, "invalid_grant"),
                  "exchange": (400, "invalid_request")}  # fmt: skip


def _id_token_login(server: TokenServer, way: str, token: str) -> httpx.Response:
    if way == "basic":
        return httpx.get(
            f"{server.url}/token", params={"service": SERVICE}, auth=(TRUST, token), timeout=10
        )
    form = (
        EXCHANGE | {"subject_token": token}
        if way == "exchange"
        else {"grant_type": "password", "service": SERVICE, "client_id": "ci",
              "username": TRUST, "password": token}
    )  # fmt: skip
    return httpx.post(f"{server.url}/token", data=form, timeout=10)


FORGED_ID_TOKENS = [
    "ES256 naming the RSA key",
    "RS256 naming the EC key",
    "exp NaN",
    "exp Infinity",
    "exp true",
    "exp past a float",
    "iat NaN",
]


def _forged_id_token(oidc: OIDCIssuer, what: str) -> str:
    rsa_key, ec_key = oidc.keys
    claims = oidc.github_actions(AUDIENCE, repository="team/app")
    if what == "ES256 naming the RSA key":
        return oidc.sign(claims, key=ec_key, headers={"kid": rsa_key.kid})
    if what == "RS256 naming the EC key":
        return oidc.sign(claims, key=rsa_key, headers={"kid": ec_key.kid})
    name, value = {
        "exp NaN": ("exp", float("nan")),
        "exp Infinity": ("exp", float("inf")),
        "exp true": ("exp", True),
        "exp past a float": ("exp", 10**400),
        "iat NaN": ("iat", float("nan")),  # would pass the trust's max_age for ever
    }[what]
    return oidc.sign(claims | {name: value})


def test_good_id_tokens_log_in_every_way(server: TokenServer, oidc: OIDCIssuer) -> None:
    """The control for the forgeries below: the same tokens, signed right, are let in."""
    for key in oidc.keys:
        token = oidc.sign(oidc.github_actions(AUDIENCE, repository="team/app"), key=key)
        for way in WRONG_ID_TOKEN:
            answer = _id_token_login(server, way, token)
            assert answer.status_code == 200, (key.alg, way, answer.text)


@pytest.mark.parametrize("what", FORGED_ID_TOKENS)
def test_forged_id_tokens_are_wrong_passwords(
    server: TokenServer, oidc: OIDCIssuer, stored_before: list[UserInfo], what: str
) -> None:
    offset = len(server.log_text())
    token = _forged_id_token(oidc, what)
    for way, (status, error) in WRONG_ID_TOKEN.items():
        answer = _id_token_login(server, way, token)
        assert answer.status_code == status, (way, answer.text)
        assert answer.json()["error"] == error, way
    assert "Traceback" not in server.log_text()[offset:]


def _admin_token(server: TokenServer, **claims: Any) -> str:
    signing = load_keys(server.keys_dir).signing
    now = int(time.time())
    base = {"iss": server.issuer, "aud": SERVICE, "sub": "root", "iat": now, "nbf": now,
            "exp": now + 300, "jti": uuid.uuid4().hex,
            "access": [{"type": "admin", "name": "api", "actions": ["*"]}]}  # fmt: skip
    header = {"typ": "JWT", "kid": signing.kid}
    return CompactSigner(signing.private, signing.alg, header).sign(base | claims)


def test_admin_tokens_with_times_that_are_no_numbers_are_401(
    server: TokenServer, stored_before: list[UserInfo]
) -> None:
    """Signed with the server's own key: only the times are wrong."""

    def call(token: str) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.get(f"{server.url}/admin/v1/users", headers=headers, timeout=10).status_code

    assert call(_admin_token(server)) == 200
    for name, value in (
        ("exp", float("inf")),  # never expired
        ("exp", "9999999999"),  # a string read as a number
        ("exp", 10**400),  # OverflowError: a 500
        ("exp", float("nan")),
        ("exp", True),
        ("nbf", float("nan")),
    ):
        assert call(_admin_token(server, **{name: value})) == 401, (name, value)


def test_forged_id_tokens_are_throttled_like_wrong_passwords(
    server: TokenServer, oidc: OIDCIssuer, stored_before: list[UserInfo]
) -> None:
    """Runs after every other probe: it throttles this client's address."""
    forged = [_forged_id_token(oidc, what) for what in FORGED_ID_TOKENS[:2]]
    ways = list(WRONG_ID_TOKEN)
    answers = []
    for i in range(60):  # the default limit is 50 failures per address
        answer = _id_token_login(server, ways[i % 3], forged[i % 2])
        answers.append(answer.status_code)
        if answer.status_code == 429:
            break
        assert answer.status_code == WRONG_ID_TOKEN[ways[i % 3]][0], answer.text
    assert answers[-1] == 429, answers
    for way in ways:
        answer = _id_token_login(server, way, forged[0])
        assert answer.status_code == 429 and int(answer.headers["retry-after"]) > 0, way


def test_nothing_failed_and_nothing_stored_changed(
    server: TokenServer, stored_before: list[UserInfo]
) -> None:
    """Runs last in this module: the whole log, and the users, after every probe."""
    entries = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
    assert entries
    failures = [e for e in entries if e["level"] in ("error", "critical") or "exc" in e]
    assert not failures, failures[:3]
    requests = [e for e in entries if e.get("msg") == "request"]
    assert requests
    failed = [e["path"] for e in requests if e["status"] >= 500]
    assert failed == INTENDED_503, failed[:5]
    assert "Traceback" not in server.log_text()
    assert _users(server) == stored_before

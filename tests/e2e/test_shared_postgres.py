"""Two token-server instances over one PostgreSQL database behave as one.

They share refresh tokens, failed-login counts, revocations and disables, and
the audit trail survives a stop or a crash of either. Clients that must not
share a throttle count with other tests connect from addresses of their own
in 127.0.0.0/8.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.support.peers import Postgres
from tests.support.token_load import (
    check_sigkill_loses_at_most_a_second,
    check_sigterm_writes_every_row,
)
from tests.support.tokenserver import TokenServer

pytestmark = pytest.mark.e2e


# A short credential cache, so a change made elsewhere shows within a test's patience.
TTL = 2.0
FAST = {"users": {"bcrypt_cost": 4, "credential_cache_ttl": TTL}}


@pytest.fixture
def pair(postgres: Postgres, tmp_path: Path) -> Iterator[tuple[TokenServer, TokenServer]]:
    """Two instances on the shared database, with the default throttle and a short credential cache."""
    keys = tmp_path / "keys"
    servers = [
        TokenServer(tmp_path / name, database_url=postgres.url, keys_dir=keys, extra=FAST)
        for name in ("a", "b")
    ]
    with contextlib.ExitStack() as running:
        for server in servers:
            running.enter_context(server)
        yield servers[0], servers[1]
        for server in servers:
            log = server.log_text()
            assert "Traceback" not in log and '"level": "error"' not in log


@contextlib.contextmanager
def client_from(address: str) -> Iterator[httpx.Client]:
    """An HTTP client whose connections come from `address` (any 127.x.y.z is this host)."""
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(transport=transport, timeout=30) as client:
        yield client


def login(http: httpx.Client, server: TokenServer, user: str, password: str) -> httpx.Response:
    return http.get(f"{server.url}/token", params={"service": "registry"}, auth=(user, password))


def failures_of(postgres: Postgres, key: str) -> int:
    engine = create_engine(postgres.url)
    try:
        with engine.connect() as conn:
            query = text("SELECT count(*) FROM login_failures WHERE key = :key")
            return int(conn.execute(query, {"key": key}).scalar_one())
    finally:
        engine.dispose()


def refused_within_ttl(attempt: Callable[[], int]) -> bool:
    """Whether `attempt` comes back 401 by the time the credential cache's TTL has passed.

    Asks until then (every few tens of milliseconds) and once more just after;
    answers other than 200 and 401 fail the test.
    """
    deadline = time.monotonic() + TTL + 0.2
    while True:
        status = attempt()
        assert status in (200, 401), status
        if status == 401:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def refresh(server: TokenServer, refresh_token: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "service": "registry",
            "client_id": "test",
            "scope": "repository:pat/app:pull",
        },
    )


def test_refresh_token_from_one_instance_is_honoured_and_revoked_on_the_other(
    postgres: Postgres, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    first = TokenServer(tmp_path / "a", database_url=postgres.url, keys_dir=keys)
    second = TokenServer(tmp_path / "b", database_url=postgres.url, keys_dir=keys)
    with contextlib.ExitStack() as running:
        # Both start at once: the schema migration must not race.
        for server in (first, second):
            server.spawn()
            running.callback(server.stop)
        first.wait_ready()
        second.wait_ready()

        first.add_user("pat", "pat-pw-1")
        login = httpx.get(
            f"{first.url}/token",
            params={"service": "registry", "offline_token": "true", "client_id": "test"},
            auth=("pat", "pat-pw-1"),
        )
        assert login.status_code == 200
        value = login.json()["refresh_token"]

        answer = refresh(second, value)
        assert answer.status_code == 200, answer.text
        assert answer.json()["scope"] == "repository:pat/app:pull"

        # A user added through one instance's CLI logs in on the other.
        second.add_user("quinn", "quinn-pw-1")
        assert (
            httpx.get(
                f"{first.url}/token",
                params={"service": "registry"},
                auth=("quinn", "quinn-pw-1"),
            ).status_code
            == 200
        )

        second.cli("refresh-token", "revoke", "--user", "pat")
        revoked = refresh(first, value)
        assert revoked.status_code == 400
        assert revoked.json()["error"] == "invalid_grant"


def test_races_across_two_instances_end_in_the_database(postgres: Postgres, tmp_path: Path) -> None:
    """Uniqueness and row locks hold across processes, not just inside one."""
    keys = tmp_path / "keys"
    extra = {"users": {"bcrypt_cost": 4}}
    servers = [
        TokenServer(tmp_path / name, database_url=postgres.url, keys_dir=keys, extra=extra)
        for name in ("c", "d")
    ]
    with contextlib.ExitStack() as running:
        for server in servers:
            running.enter_context(server)
        servers[0].add_user("boss", "boss-pw-1", "admin")
        clients = [
            running.enter_context(httpx.Client(base_url=s.url, auth=("boss", "boss-pw-1")))
            for s in servers
        ]
        body = {"name": "ci-pg", "scopes": ["repository:pg/*:pull"], "ttl": 600}
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = sorted(
                pool.map(
                    lambda i: clients[i % 2].post("/admin/v1/ci-tokens", json=body).status_code,
                    range(8),
                )
            )
        assert statuses == [201] + [409] * 7

        clients[0].post("/admin/v1/users", json={"name": "pgracer", "password": "pw-pg-1"})

        def hit(i: int) -> int:
            client = clients[i % 2]
            if i % 3 == 0:
                return client.delete("/admin/v1/users/pgracer").status_code
            return client.put(
                "/admin/v1/users/pgracer/groups", json={"groups": [f"g{i}", "shared"]}
            ).status_code

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            seen = set(pool.map(hit, range(60)))
        assert seen <= {200, 204, 404}, seen
        assert 404 in seen
        for server in servers:
            log = server.log_text()
            assert "Traceback" not in log and '"level": "error"' not in log


def test_failed_logins_count_across_instances(
    pair: tuple[TokenServer, TokenServer], postgres: Postgres
) -> None:
    a, b = pair
    for name in ("tara", "uma", "vic", "wes"):
        a.add_user(name, f"{name}-pw-1")

    # Ten failures for one account, spread over both: the 11th on either is 429,
    # right password or not (it is not checked).
    with client_from("127.0.0.21") as http:
        for i in range(10):
            assert login(http, pair[i % 2], "tara", "wrong").status_code == 401
        for server in pair:
            answer = login(http, server, "tara", "tara-pw-1")
            assert answer.status_code == 429, server.url
            assert 0 < int(answer.headers["retry-after"]) <= 300
            assert login(http, server, "TARA", "wrong").status_code == 429

    # Fifty failures from one address, for fifty accounts: the address is throttled on
    # both, for every account, while the same account from elsewhere still logs in.
    with client_from("127.0.0.22") as http:
        for i in range(50):
            assert login(http, pair[i % 2], f"nobody{i}", "wrong").status_code == 401
        for server in pair:
            answer = login(http, server, "uma", "uma-pw-1")
            assert answer.status_code == 429, server.url
            assert 0 < int(answer.headers["retry-after"]) <= 300
    with client_from("127.0.0.23") as http:
        assert login(http, a, "uma", "uma-pw-1").status_code == 200

    # A success on one instance clears the account's count for both.
    with client_from("127.0.0.23") as http:
        for i in range(5):
            assert login(http, pair[i % 2], "vic", "wrong").status_code == 401
        assert login(http, b, "vic", "vic-pw-1").status_code == 200
        assert failures_of(postgres, "account:vic") == 0
        for i in range(9):
            assert login(http, pair[i % 2], "vic", "wrong").status_code == 401
        assert login(http, a, "vic", "vic-pw-1").status_code == 200

    # Failures racing on both instances all count: one row per 401, none lost.
    with client_from("127.0.0.24") as http, concurrent.futures.ThreadPoolExecutor(10) as pool:
        statuses = list(
            pool.map(lambda i: login(http, pair[i % 2], "wes", "wrong").status_code, range(20))
        )
        assert set(statuses) <= {401, 429}, statuses
        assert failures_of(postgres, "account:wes") == statuses.count(401) >= 10
        for server in pair:
            assert login(http, server, "wes", "wes-pw-1").status_code == 429


def test_revocations_and_disables_on_one_instance_hold_on_the_other(
    pair: tuple[TokenServer, TokenServer],
) -> None:
    a, b = pair
    a.add_user("pgadmin", "pgadmin-pw-1", "admin")
    a.add_user("pgadmin2", "pgadmin2-pw-1", "admin")
    with client_from("127.0.0.25") as http:
        admin_a = lambda method, path, **kw: http.request(  # noqa: E731
            method, f"{a.url}/admin/v1{path}", auth=("pgadmin", "pgadmin-pw-1"), **kw
        )

        # A CI token revoked on A no longer logs in on B.
        body = {"name": "ci-shared", "scopes": ["repository:shared/*:pull"], "ttl": 600}
        created = admin_a("POST", "/ci-tokens", json=body)
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        assert login(http, b, "ci-shared", secret).status_code == 200
        assert admin_a("DELETE", "/ci-tokens/ci-shared").status_code == 204
        assert login(http, b, "ci-shared", secret).status_code == 401

        # A password changed on A: B's credential cache holds the old one (two logins,
        # the second from the cache), and refuses it within the cache's TTL; the new
        # one works on B at once.
        body = {"name": "rita", "password": "rita-pw-1", "groups": []}
        assert admin_a("POST", "/users", json=body).status_code == 201
        for _ in range(2):
            assert login(http, b, "rita", "rita-pw-1").status_code == 200
        assert (
            admin_a("PUT", "/users/rita/password", json={"password": "rita-pw-2"}).status_code
            == 204
        )
        assert login(http, b, "rita", "rita-pw-2").status_code == 200
        assert refused_within_ttl(lambda: login(http, b, "rita", "rita-pw-1").status_code)
        assert login(http, b, "rita", "rita-pw-2").status_code == 200

        # Disabled on A: refused on B with the right password (cached there) within the
        # TTL; enabled again, let in at once; deleted, refused within the TTL.
        assert admin_a("PUT", "/users/rita/disabled", json={"disabled": True}).status_code == 200
        assert refused_within_ttl(lambda: login(http, b, "rita", "rita-pw-2").status_code)
        assert admin_a("PUT", "/users/rita/disabled", json={"disabled": False}).status_code == 200
        assert login(http, b, "rita", "rita-pw-2").status_code == 200
        assert admin_a("DELETE", "/users/rita").status_code == 204
        assert refused_within_ttl(lambda: login(http, b, "rita", "rita-pw-2").status_code)

        # An admin's Bearer token from B works on both until A deletes the admin.
        answer = http.get(
            f"{b.url}/token",
            params={"service": "registry", "scope": "admin:api:*"},
            auth=("pgadmin2", "pgadmin2-pw-1"),
        )
        assert answer.status_code == 200
        bearer = {"Authorization": f"Bearer {answer.json()['token']}"}
        for server in pair:
            assert http.get(f"{server.url}/admin/v1/users", headers=bearer).status_code == 200
        assert admin_a("DELETE", "/users/pgadmin2").status_code == 204
        for server in pair:
            refused = http.get(f"{server.url}/admin/v1/users", headers=bearer)
            assert refused.status_code == 401, server.url


def test_personal_tokens_are_one_set_across_instances(
    pair: tuple[TokenServer, TokenServer],
) -> None:
    """Made on one instance, used on the other; one live name per person however many race;
    revoked or ended with the person on one, refused on the other at once."""
    a, b = pair
    a.add_user("pgboss", "pgboss-pw-1", "admin")
    a.add_user("sara", "sara-pw-1")
    servers = (a, b)
    body = {"user": "sara", "name": "laptop", "scopes": ["repository:sara/*:pull"], "ttl": 600}
    with client_from("127.0.0.26") as http:

        def create(i: int) -> httpx.Response:
            return http.post(
                f"{servers[i % 2].url}/admin/v1/personal-tokens",
                json=body,
                auth=("pgboss", "pgboss-pw-1"),
            )

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(create, range(8)))
        assert sorted(r.status_code for r in answers) == [201] + [409] * 7
        (secret,) = [r.json()["secret"] for r in answers if r.status_code == 201]
        for server in servers:
            assert login(http, server, "sara", secret).status_code == 200
        b.cli("personal-token", "revoke", "laptop", "--user", "sara")
        for server in servers:
            assert login(http, server, "sara", secret).status_code == 401
        again = create(0)
        assert again.status_code == 201, again.text
        assert login(http, b, "sara", again.json()["secret"]).status_code == 200
        a.cli("user", "passwd", "sara", "--password-stdin", input="sara-pw-2\n")
        assert login(http, b, "sara", again.json()["secret"]).status_code == 401


def _sign_in(http: httpx.Client, server: TokenServer, user: str, password: str) -> str:
    """Sign in to the web page on `server`; the session cookie, good on every instance."""
    form = http.get(f"{server.url}/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    answer = http.post(
        f"{server.url}/ui/login",
        data={"username": user, "password": password, "csrf": csrf.group(1)},
    )
    assert answer.status_code == 303, answer.text
    cookie = answer.cookies["ts_session"]
    http.cookies.clear()  # each cookie is sent by hand, to whichever instance
    return cookie


def _page(http: httpx.Client, server: TokenServer, cookie: str) -> int:
    """The status of the users page for this cookie: 200 signed in, 303 sent to sign in."""
    answer = http.get(f"{server.url}/ui/users", headers={"Cookie": f"ts_session={cookie}"})
    assert answer.status_code in (200, 303), answer.text
    return answer.status_code


def sessions_of(postgres: Postgres, subject: str) -> int:
    engine = create_engine(postgres.url)
    try:
        with engine.connect() as conn:
            query = text("SELECT count(*) FROM ui_sessions WHERE subject = :s")
            return int(conn.execute(query, {"s": subject}).scalar_one())
    finally:
        engine.dispose()


def test_web_sessions_ended_on_one_instance_are_gone_on_the_other(
    pair: tuple[TokenServer, TokenServer], postgres: Postgres
) -> None:
    a, b = pair
    a.add_user("uiops", "uiops-pw-1", "admin")
    a.add_user("uiroot", "uiroot-pw-1", "admin")
    ops = ("uiops", "uiops-pw-1")
    with client_from("127.0.0.26") as http:
        # Signed in on A, known on B; ended through B's API, refused on A at once.
        cookie = _sign_in(http, a, "uiroot", "uiroot-pw-1")
        assert _page(http, b, cookie) == 200
        listed = http.get(f"{b.url}/admin/v1/ui-sessions", params={"user": "uiroot"}, auth=ops)
        (session,) = listed.json()
        ended = http.delete(f"{b.url}/admin/v1/ui-sessions/{session['id']}", auth=ops)
        assert ended.status_code == 204
        assert _page(http, a, cookie) == 303

        # A password change on B: the rows are gone, A refuses the cookie at once.
        cookie = _sign_in(http, a, "uiroot", "uiroot-pw-1")
        changed = http.put(
            f"{b.url}/admin/v1/users/uiroot/password", json={"password": "uiroot-pw-2"}, auth=ops
        )
        assert changed.status_code == 204
        assert sessions_of(postgres, "uiroot") == 0
        assert _page(http, a, cookie) == 303

        # Disabled on A and enabled again, deleted on B and created again on A:
        # no old cookie comes back on either instance.
        for end, restore in (
            (("PUT", b, "/users/uiroot/disabled", {"disabled": True}),
             ("PUT", a, "/users/uiroot/disabled", {"disabled": False})),
            (("DELETE", b, "/users/uiroot", None),
             ("POST", a, "/users", {"name": "uiroot", "password": "uiroot-pw-2",
                                    "groups": ["admin"]})),
        ):  # fmt: skip
            cookie = _sign_in(http, b, "uiroot", "uiroot-pw-2")
            for method, server, path, body in (end, restore):
                kwargs = {} if body is None else {"json": body}
                answer = http.request(method, f"{server.url}/admin/v1{path}", auth=ops, **kwargs)
                assert answer.is_success, answer.text
                assert sessions_of(postgres, "uiroot") == 0
            for server in pair:
                assert _page(http, server, cookie) == 303, (end, server.url)
        assert _page(http, a, _sign_in(http, b, "uiroot", "uiroot-pw-2")) == 200


def test_user_changes_hold_at_once_where_made_and_within_the_ttl_elsewhere(
    pair: tuple[TokenServer, TokenServer],
) -> None:
    """Both instances remember database users for the warm path; a change is never lost."""
    a, b = pair
    a.add_user("sadmin", "sadmin-pw-1", "admin")
    with client_from("127.0.0.26") as http:
        admin_a = lambda method, path, **kw: http.request(  # noqa: E731
            method, f"{a.url}/admin/v1{path}", auth=("sadmin", "sadmin-pw-1"), **kw
        )
        body = {"name": "sam", "password": "sam-pw-1", "groups": ["dev"]}
        assert admin_a("POST", "/users", json=body).status_code == 201
        for server in pair:
            for _ in range(3):  # the second and third from memory
                assert login(http, server, "sam", "sam-pw-1").status_code == 200

        # Disabled through A: A refuses at once, B within the TTL.
        assert admin_a("PUT", "/users/sam/disabled", json={"disabled": True}).status_code == 200
        assert login(http, a, "sam", "sam-pw-1").status_code == 401
        assert refused_within_ttl(lambda: login(http, b, "sam", "sam-pw-1").status_code)
        assert admin_a("PUT", "/users/sam/disabled", json={"disabled": False}).status_code == 200
        for server in pair:
            assert login(http, server, "sam", "sam-pw-1").status_code == 200

        # A password set by the CLI (a process of its own, so "elsewhere" for both): the
        # new password works everywhere at once, the old one stops within the TTL.
        a.cli("user", "passwd", "sam", "--password-stdin", input="sam-pw-2\n")
        for server in pair:
            assert login(http, server, "sam", "sam-pw-2").status_code == 200
        for server in pair:
            assert refused_within_ttl(
                lambda s=server: login(http, s, "sam", "sam-pw-1").status_code
            )

        # Deleted through B: B refuses at once, A within the TTL.
        admin_b = lambda method, path, **kw: http.request(  # noqa: E731
            method, f"{b.url}/admin/v1{path}", auth=("sadmin", "sadmin-pw-1"), **kw
        )
        assert login(http, a, "sam", "sam-pw-2").status_code == 200
        assert admin_b("DELETE", "/users/sam").status_code == 204
        assert login(http, b, "sam", "sam-pw-2").status_code == 401
        assert refused_within_ttl(lambda: login(http, a, "sam", "sam-pw-2").status_code)

        # Added back through the CLI: logs in on both at once (nothing remembered refuses).
        a.add_user("sam", "sam-pw-3")
        for server in pair:
            assert login(http, server, "sam", "sam-pw-3").status_code == 200


@pytest.mark.parametrize(
    "check", [check_sigterm_writes_every_row, check_sigkill_loses_at_most_a_second]
)
def test_audit_rows_survive_a_stop_and_a_crash(
    postgres: Postgres, tmp_path: Path, check: Callable[[TokenServer, str], object]
) -> None:
    server = TokenServer(tmp_path / "audit", database_url=postgres.url).start()
    try:
        check(server, postgres.url)
    finally:
        server.stop()

"""The audit trail (a row per token request, every outcome) and login throttling."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import FakeClock, LeakGuard
from tests.support.tokenserver import TokenServer
from tokenserver import audit
from tokenserver.config import Config
from tokenserver.store.audit import AuditRecord, AuditStore
from tokenserver.store.db import Database

SERVICE = "registry"
StartClient = Callable[[Config], AbstractContextManager[TestClient]]
UA = {"User-Agent": "audit-test/1.0"}


def _rows(client: TestClient, database: Database) -> list[AuditRecord]:
    assert client.app.state.services.audit.flush(5)  # type: ignore[attr-defined]
    return list(reversed(AuditStore(database).query(limit=1000)))


def test_a_row_for_every_outcome(
    client: TestClient,
    database: Database,
    add_user: Callable[..., str],
    leak_guard: LeakGuard,
) -> None:
    alice = ("alice", add_user("alice"))
    get = lambda auth, *scopes: client.get(  # noqa: E731
        "/token", params={"service": SERVICE, "scope": list(scopes)}, auth=auth, headers=UA
    )
    assert get(alice, "repository:alice/a:pull,push").status_code == 200
    assert get(alice, "repository:alice/a:pull", "repository:bob/b:pull").status_code == 200
    assert get(alice, "repository:bob/b:pull").status_code == 200
    wrong = leak_guard.add("wrong-password-123")
    assert get(("alice", wrong), "repository:alice/a:pull").status_code == 401
    assert client.get("/token", params={"service": "nope"}, headers=UA).status_code == 400
    assert client.get("/token", params={"service": SERVICE}, headers=UA).status_code == 200

    rows = _rows(client, database)
    assert [r.outcome for r in rows] == [
        "granted", "partial", "denied", "bad_credentials", "invalid_request", "granted",
    ]  # fmt: skip
    first = rows[0]
    assert (first.subject, first.kind, first.backend, first.via) == (
        "alice", "user", "database", "basic",
    )  # fmt: skip
    assert (first.client_ip, first.user_agent, first.service) == (
        "testclient", "audit-test/1.0", SERVICE,
    )  # fmt: skip
    assert first.requested == first.granted == "repository:alice/a:pull,push"
    assert rows[1].granted == "repository:alice/a:pull"
    assert rows[2].requested == "repository:bob/b:pull" and rows[2].granted == ""
    assert rows[3].subject == "alice" and rows[3].kind == ""
    assert rows[5].kind == "anonymous" and rows[5].via == "anonymous"
    with database.engine.connect() as conn:
        dump = repr(conn.execute(text("SELECT * FROM audit_events")).all())
    assert not leak_guard.found_in(dump)


def test_post_grants_are_audited(
    client: TestClient, database: Database, add_user: Callable[..., str]
) -> None:
    password = add_user("alice")
    form = {"grant_type": "password", "client_id": "c", "service": SERVICE,
            "username": "alice", "password": password, "scope": "repository:alice/x:pull"}  # fmt: skip
    response = client.post("/token", data=form)
    assert response.status_code == 200
    assert client.post("/token", data={**form, "password": "nope"}).status_code == 400
    rows = _rows(client, database)
    assert [(r.via, r.outcome) for r in rows] == [
        ("password", "granted"), ("password", "bad_credentials"),
    ]  # fmt: skip


def test_backend_unavailable_is_audited(
    make_config: Callable[..., Config],
    start_client: StartClient,
    tmp_path: Path,
) -> None:
    config = make_config({"users": {"htpasswd": str(tmp_path / "missing.htpasswd")}})
    with start_client(config) as client:
        response = client.get("/token", params={"service": SERVICE}, auth=("alice", "pw"))
        assert response.status_code == 503
        database = Database(config.database.url)
        try:
            rows = _rows(client, database)
        finally:
            database.dispose()
    assert [r.outcome for r in rows] == ["backend_unavailable"]


def test_retention_purges_old_rows(
    client: TestClient, database: Database, clock: FakeClock
) -> None:
    old = AuditRecord(
        clock.now - dt.timedelta(days=91), "ghost", "user", "database", "basic", "127.0.0.1",
        "ua", SERVICE, "", "", "granted",
    )  # fmt: skip
    recent = AuditRecord(
        clock.now - dt.timedelta(days=89), "recent", "user", "database", "basic", "127.0.0.1",
        "ua", SERVICE, "", "", "granted",
    )  # fmt: skip
    AuditStore(database).add([old, recent])
    assert client.app.state.services.audit.purge_expired() == 1  # type: ignore[attr-defined]
    assert [r.subject for r in _rows(client, database)] == ["recent"]


def _aged(clock: FakeClock, subject: str, days: int) -> AuditRecord:
    at = clock.now - dt.timedelta(days=days)
    return AuditRecord(at, subject, "user", "database", "basic", "127.0.0.1", "ua", SERVICE, "",
                       "", "granted")  # fmt: skip


def test_retention_purges_in_chunks(
    client: TestClient, database: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "PURGE_CHUNK", 7)
    days = [91] * 25 + [89] * 3
    records = [_aged(clock, f"s{i}", d) for i, d in enumerate(days)]
    AuditStore(database).add(records)
    assert client.app.state.services.audit.purge_expired() == 25  # type: ignore[attr-defined]
    assert sorted(r.subject for r in _rows(client, database)) == ["s25", "s26", "s27"]


@pytest.fixture
def throttled(
    make_config: Callable[..., Config], start_client: StartClient
) -> Iterator[TestClient]:
    config = make_config({"throttle": {"account_failures": 3, "address_failures": 5, "window": 60}})
    with start_client(config) as client:
        yield client


def _login(client: TestClient, user: str, password: str) -> Any:
    return client.get("/token", params={"service": SERVICE}, auth=(user, password))


def test_account_throttle_hides_whether_the_password_was_right(
    throttled: TestClient, add_user: Callable[..., str], database: Database
) -> None:
    password = add_user("alice")
    for _ in range(3):
        assert _login(throttled, "alice", "wrong").status_code == 401
    response = _login(throttled, "alice", password)
    assert response.status_code == 429
    assert response.json()["error"] == "too_many_requests"
    assert 0 < int(response.headers["retry-after"]) <= 60
    assert _login(throttled, "alice", "wrong").status_code == 429
    form = {"grant_type": "password", "client_id": "c", "service": SERVICE,
            "username": "alice", "password": password}  # fmt: skip
    assert throttled.post("/token", data=form).status_code == 429
    assert _rows(throttled, database)[-1].outcome == "throttled"


def test_success_resets_the_account_counter(
    throttled: TestClient, add_user: Callable[..., str]
) -> None:
    password = add_user("bob")
    for _ in range(2):
        assert _login(throttled, "bob", "wrong").status_code == 401
    assert _login(throttled, "bob", password).status_code == 200
    for _ in range(2):
        assert _login(throttled, "bob", "wrong").status_code == 401
    assert _login(throttled, "bob", password).status_code == 200


def test_address_throttle_spans_accounts(
    throttled: TestClient, add_user: Callable[..., str]
) -> None:
    password = add_user("carol")
    for i in range(5):
        assert _login(throttled, f"guess{i}", "wrong").status_code == 401
    response = _login(throttled, "carol", password)
    assert response.status_code == 429 and int(response.headers["retry-after"]) > 0


@pytest.mark.peers
def test_ipv6_clients_are_throttled_by_their_64_on_a_real_server(
    tmp_path: Path, leak_guard: LeakGuard
) -> None:
    """A token server on [::1] behind a proxy there (trusted): a client's /64 is one client.

    Only ::1 is a local IPv6 address, so the clients' addresses come as a
    trusted proxy forwards them, in each form a proxy may write.
    """
    ts = TokenServer(
        tmp_path,
        host="::1",
        extra={
            "server": {"trusted_proxies": ["::1"]},
            "users": {"bcrypt_cost": 4},
            "throttle": {"account_failures": 100, "address_failures": 3, "window": 300},
        },
    )
    password = leak_guard.add("alice-pw-ipv6")
    ts.add_user("alice", password)
    assert ts.url.startswith("http://[::1]:")
    with ts, httpx.Client(base_url=ts.url, timeout=30) as http:

        def login(user: str, secret: str, forwarded: str | None = None) -> int:
            headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
            auth = (user, secret)
            response = http.get("/token", params={"service": SERVICE}, auth=auth, headers=headers)
            return response.status_code

        assert login("alice", password) == 200  # the proxy's own request, not forwarded
        # Three failures from three addresses of one /64.
        assert login("guess1", "wrong", "2001:db8:1:2::1") == 401
        assert login("guess2", "wrong", "[2001:db8:1:2::2]:50000") == 401
        assert login("guess3", "wrong", "2001:db8:1:2:ffff::3, ::1") == 401  # one more hop
        # A fourth address of that /64 is the same client: refused, right password or not.
        assert login("alice", password, "2001:db8:1:2:abcd::4") == 429
        # The neighbouring /64 and the proxy itself are other clients.
        assert login("alice", password, "2001:db8:1:3::1") == 200
        assert login("alice", password) == 200
        # An IPv4 client forwarded as a mapped address is its IPv4 address, not part of a /64.
        for i in range(1, 4):
            assert login(f"guess{i}", "wrong", f"::ffff:192.0.2.{i}") == 401
        assert login("alice", password, "::ffff:192.0.2.4") == 200
        assert login("guess4", "wrong", "192.0.2.1") == 401
        assert login("guess5", "wrong", "::FFFF:c000:201") == 401
        assert login("alice", password, "192.0.2.1") == 429

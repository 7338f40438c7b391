"""Login throttling (over its database store) and CI-token scope patterns, without a server."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from authcore.identity import ScopeLimit, ScopePatternError, parse_scope_pattern
from authcore.scope import Access, parse_scopes
from tokenserver.store.db import Database
from tokenserver.store.login_failures import LoginFailureStore
from tokenserver.throttle import LoginThrottle, Standing, ThrottleUnavailable, address_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_account_limit_and_window(database: Database) -> None:
    clock = Clock()
    throttle = LoginThrottle(LoginFailureStore(database), 3, 100, 60, clock)
    for _ in range(3):
        assert throttle.retry_after("alice", "10.0.0.1") == 0
        throttle.failure("alice", "10.0.0.1")
        clock.now += 10
    # Three failures at t=1000, 1010, 1020; the first leaves the window at 1060.
    assert throttle.retry_after("alice", "10.0.0.2") == 30
    assert throttle.retry_after("bob", "10.0.0.1") == 0
    clock.now = 1060.5
    assert throttle.retry_after("alice", "10.0.0.1") == 0


def test_address_limit_counts_every_account(database: Database) -> None:
    clock = Clock()
    throttle = LoginThrottle(LoginFailureStore(database), 100, 4, 300, clock)
    for i in range(4):
        throttle.failure(f"user{i}", "10.0.0.9")
    assert throttle.retry_after("someone-new", "10.0.0.9") == 300
    assert throttle.retry_after("someone-new", "10.0.0.8") == 0
    assert throttle.retry_after("someone-new", None) == 0


def test_success_clears_the_account_not_the_address(database: Database) -> None:
    clock = Clock()
    throttle = LoginThrottle(LoginFailureStore(database), 2, 3, 300, clock)
    throttle.failure("alice", "a")
    throttle.failure("alice", "a")
    assert throttle.retry_after("alice", None) > 0
    throttle.success("alice")
    assert throttle.retry_after("alice", None) == 0
    throttle.failure("bob", "a")
    assert throttle.retry_after("carol", "a") > 0  # three failures from "a" in all


def _statements(database: Database) -> list[str]:
    """The first word of every statement on login_failures from now on, as SQLite ran it."""
    seen: list[str] = []

    def trace(statement: str) -> None:
        if "login_failures" in statement:
            seen.append(statement.split(None, 1)[0].upper())

    def checkout(dbapi_connection: Any, *_args: Any) -> None:
        dbapi_connection.set_trace_callback(trace)

    event.listen(database.engine, "checkout", checkout)
    return seen


def _failure_rows(database: Database) -> list[tuple[str, float]]:
    with database.engine.connect() as conn:
        rows = conn.execute(text("SELECT key, at FROM login_failures ORDER BY id")).all()
    return [(row.key, row.at) for row in rows]


def test_the_warm_path_is_one_read_and_no_write(database: Database) -> None:
    throttle = LoginThrottle(LoginFailureStore(database), 3, 10, 60, Clock())
    throttle.retry_after("warm-up", "10.0.0.1")  # the pool's first connection
    seen = _statements(database)
    standing = throttle.check("alice", "10.0.0.1")
    throttle.success("alice", standing)
    assert seen == ["SELECT"]

    throttle.failure("alice", "10.0.0.1")
    seen.clear()
    standing = throttle.check("alice", "10.0.0.1")
    assert standing.account_failures == 1
    throttle.success("alice", standing)
    assert "DELETE" in seen
    assert [key for key, _ in _failure_rows(database)] == ["address:10.0.0.1"]


def test_failures_expire_and_are_purged(database: Database) -> None:
    clock = Clock()
    throttle = LoginThrottle(LoginFailureStore(database), 3, 10, 60, clock)
    for i in range(3):
        throttle.failure(f"user{i}", "10.0.0.1")
    assert len(_failure_rows(database)) == 6
    clock.now += 61
    throttle.failure("late", None)
    assert _failure_rows(database) == [("account:late", clock.now)]


def test_racing_failures_all_count(database: Database) -> None:
    throttle = LoginThrottle(LoginFailureStore(database), 1000, 1000, 60, Clock())
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: throttle.failure("alice", "10.0.0.1"), range(80)))
    rows = _failure_rows(database)
    assert sum(key == "account:alice" for key, _ in rows) == 80
    assert sum(key == "address:10.0.0.1" for key, _ in rows) == 80


def test_one_address_however_it_is_written(database: Database) -> None:
    throttle = LoginThrottle(LoginFailureStore(database), 100, 2, 60, Clock())
    throttle.failure("a", "::ffff:10.0.0.9")
    throttle.failure("b", "2001:DB8:0:0::1")
    throttle.failure("c", "2001:db8::1")
    assert throttle.retry_after("d", "10.0.0.9") == 0
    throttle.failure("d", "10.0.0.9")
    assert throttle.retry_after("e", "10.0.0.9") == 60
    assert throttle.retry_after("e", "2001:db8:0::1") == 60


@pytest.mark.parametrize(
    ("address", "prefix", "key"),
    [
        # IPv4: one address, one key; its neighbours are other clients.
        ("10.0.0.9", 64, "10.0.0.9"),
        ("10.0.0.10", 0, "10.0.0.10"),
        # IPv4-mapped (a dual-stack socket's IPv4 client): the IPv4 address, whatever the prefix.
        ("::ffff:10.0.0.9", 64, "10.0.0.9"),
        ("::FFFF:0a00:0009", 128, "10.0.0.9"),
        ("::ffff:10.0.0.9", 0, "10.0.0.9"),
        # IPv6: the network of `prefix` bits, however the address is written.
        ("2001:db8:1:2::1", 64, "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:ffff:ffff:ffff:ffff", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", 56, "2001:db8:1::/56"),
        ("2001:db8:1:ff::1", 56, "2001:db8:1::/56"),
        ("2001:db8:1:2::1", 128, "2001:db8:1:2::1/128"),
        ("2001:db8:1:2::1", 0, "::/0"),
        ("::1", 64, "::/64"),
        ("fe80::1%eth0", 64, "fe80::/64"),  # a zone does not make a network of its own
        # What no parser takes (a test client's name) is its own key.
        ("testclient", 64, "testclient"),
    ],
)
def test_address_keys(address: str, prefix: int, key: str) -> None:
    assert address_key(address, prefix) == "address:" + key


def test_an_ipv6_client_is_counted_by_its_network(database: Database) -> None:
    throttle = LoginThrottle(LoginFailureStore(database), 100, 3, 60, Clock())
    # As a trusted proxy's X-Forwarded-For hands them over: any address of the client's /64.
    throttle.failure("a", "2001:db8:1:2::1")
    throttle.failure("b", "2001:db8:1:2:aaaa::2")
    assert throttle.retry_after("c", "2001:db8:1:2::3") == 0
    throttle.failure("c", "2001:db8:1:2:ffff:ffff:ffff:fffe")
    assert throttle.retry_after("d", "2001:db8:1:2::4") == 60
    assert throttle.peek("d", "2001:db8:1:2:5::") == Standing(60, 0)
    assert throttle.retry_after("d", "2001:db8:1:3::1") == 0  # the next /64
    # IPv4 clients stay one address each, and a mapped address is its IPv4 one.
    for address in ("10.0.0.1", "::ffff:10.0.0.2", "10.0.0.3"):
        throttle.failure("e", address)
    assert throttle.retry_after("f", "10.0.0.4") == 0
    assert throttle.retry_after("f", "::ffff:10.0.0.1") == 0


def test_the_ipv6_prefix_is_configurable(database: Database) -> None:
    per_host = LoginThrottle(LoginFailureStore(database), 100, 2, 60, Clock(), ipv6_prefix=128)
    per_host.failure("a", "2001:db8:9::1")
    per_host.failure("b", "2001:db8:9::2")
    assert per_host.retry_after("c", "2001:db8:9::3") == 0
    per_site = LoginThrottle(LoginFailureStore(database), 100, 2, 60, Clock(), ipv6_prefix=48)
    per_site.failure("a", "2001:db8:7:1::1")
    per_site.failure("b", "2001:db8:7:2::1")
    assert per_site.retry_after("c", "2001:db8:7:ffff::3") == 60
    assert per_site.retry_after("c", "2001:db8:8::3") == 0
    for bad in (-1, 129):
        with pytest.raises(ValueError, match="0 to 128"):
            LoginThrottle(LoginFailureStore(database), 100, 2, 60, Clock(), ipv6_prefix=bad)


def test_an_unreachable_database_is_an_error_not_a_pass(tmp_path: Path) -> None:
    broken = Database(f"sqlite:///{tmp_path / 'missing' / 'db.sqlite'}")
    throttle = LoginThrottle(LoginFailureStore(broken), 3, 10, 60, Clock())
    try:
        with pytest.raises(ThrottleUnavailable):
            throttle.check("alice", "10.0.0.1")
        with pytest.raises(ThrottleUnavailable):
            throttle.failure("alice", "10.0.0.1")
    finally:
        broken.dispose()


@pytest.mark.parametrize(
    ("patterns", "scope", "expected"),
    [
        (
            ["repository:team/app:pull,push"],
            "repository:team/app:pull,push,delete",
            {"pull", "push"},
        ),
        (["repository:team/app:pull,push"], "repository:team/other:pull", set()),
        (["repository:team/*:pull"], "repository:team/x:pull,push", {"pull"}),
        (["repository:team/*:pull"], "repository:team/x/y:pull", set()),
        (["repository:team/*:pull"], "repository:teamx/y:pull", set()),
        (["repository:team/app:*"], "repository:team/app:pull,delete", {"pull", "delete"}),
        (["repository:team/app:pull,push"], "repository:team/app:*", {"pull", "push"}),
        (["registry:catalog:*"], "repository:catalog:pull", set()),
        (
            ["repository:a/b:pull", "repository:a/*:push"],
            "repository:a/b:pull,push",
            {"pull", "push"},
        ),
    ],
)
def test_scope_limit_narrows(patterns: list[str], scope: str, expected: set[str]) -> None:
    narrowed = ScopeLimit.parse(patterns).narrow(parse_scopes([scope]))
    assert {a for n in narrowed for a in n.actions} == expected


@pytest.mark.parametrize(
    "text",
    [
        "repository:team/app",
        "repository::pull",
        "Repo:team/app:pull",
        "repository:team/app:Pull",
        "repository:team/app:",
        "repository:/regex/:pull",
        "repository:${account}/*:pull",
        "repository:team/[a-:pull",
        "repository:team app:pull",
    ],
)
def test_bad_scope_patterns(text: str) -> None:
    with pytest.raises(ScopePatternError):
        parse_scope_pattern(text)


def test_a_scope_glob_matches_in_linear_time() -> None:
    """Python's `re` would try every split of the name among the stars (forever, here)."""
    limit = ScopeLimit.parse(["repository:*a*a*a*a*a*a*a*a*a*a*b:pull", "repository:x[/-0]y:push"])
    assert limit.allowed(Access("repository", "a" * 255, frozenset({"pull"}))) == frozenset()
    hit = Access("repository", "a" * 254 + "b", frozenset({"pull"}))
    assert limit.allowed(hit) == frozenset({"pull"})
    assert limit.allowed(Access("repository", "x0y", frozenset({"push"}))) == {"push"}
    assert limit.allowed(Access("repository", "x/y", frozenset({"push"}))) == frozenset()


def test_scope_limit_round_trips_and_needs_a_scope() -> None:
    limit = ScopeLimit.parse(["repository:team/*:pull,push", "registry:catalog:*"])
    assert ScopeLimit.parse(str(limit).split()) == limit
    with pytest.raises(ScopePatternError):
        ScopeLimit.parse([])


def test_peek_answers_from_the_last_read_for_a_second(database: Database) -> None:
    clock = Clock()
    throttle = LoginThrottle(LoginFailureStore(database), 2, 10, 60, clock)
    assert throttle.peek("alice", "10.0.0.2") is None  # nothing read yet
    throttle.check("alice", "10.0.0.2")
    seen = _statements(database)
    standing = throttle.peek("alice", "10.0.0.2")
    assert standing is not None and standing.retry_after == 0
    assert seen == []  # from memory

    # Another instance's failures (written straight to the store) count here once
    # the read is over a second old.
    other = LoginFailureStore(database)
    other.add(["account:alice"], clock.now)
    other.add(["account:alice"], clock.now)
    assert throttle.peek("alice", "10.0.0.2") == standing
    clock.now += 1.0
    assert throttle.peek("alice", "10.0.0.2") is None
    assert throttle.check("alice", "10.0.0.2").retry_after > 0
    throttled = throttle.peek("alice", "10.0.0.2")
    assert throttled is not None and throttled.retry_after > 0


def test_own_failures_and_clears_are_seen_at_once(database: Database) -> None:
    throttle = LoginThrottle(LoginFailureStore(database), 1, 10, 60, Clock())
    throttle.check("bob", "10.0.0.3")
    assert throttle.peek("bob", "10.0.0.3") is not None
    throttle.failure("bob", "10.0.0.3")
    assert throttle.peek("bob", "10.0.0.3") is None  # forgotten: the next check reads
    standing = throttle.check("bob", "10.0.0.3")
    assert standing.retry_after > 0 and standing.account_failures == 1
    throttle.success("bob", standing)
    assert throttle.peek("bob", "10.0.0.3") is None
    assert throttle.check("bob", "10.0.0.3").retry_after == 0

"""Login throttling windows and CI-token scope patterns, without a server."""

from __future__ import annotations

import pytest

from authcore.identity import ScopeLimit, ScopePatternError, parse_scope_pattern
from authcore.scope import parse_scopes
from tokenserver.throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_account_limit_and_window() -> None:
    clock = Clock()
    throttle = LoginThrottle(3, 100, 60, clock)
    for _ in range(3):
        assert throttle.retry_after("alice", "10.0.0.1") == 0
        throttle.failure("alice", "10.0.0.1")
        clock.now += 10
    # Three failures at t=1000, 1010, 1020; the first leaves the window at 1060.
    assert throttle.retry_after("alice", "10.0.0.2") == 30
    assert throttle.retry_after("bob", "10.0.0.1") == 0
    clock.now = 1060.5
    assert throttle.retry_after("alice", "10.0.0.1") == 0


def test_address_limit_counts_every_account() -> None:
    clock = Clock()
    throttle = LoginThrottle(100, 4, 300, clock)
    for i in range(4):
        throttle.failure(f"user{i}", "10.0.0.9")
    assert throttle.retry_after("someone-new", "10.0.0.9") == 300
    assert throttle.retry_after("someone-new", "10.0.0.8") == 0
    assert throttle.retry_after("someone-new", None) == 0


def test_success_clears_the_account_not_the_address() -> None:
    clock = Clock()
    throttle = LoginThrottle(2, 3, 300, clock)
    throttle.failure("alice", "a")
    throttle.failure("alice", "a")
    assert throttle.retry_after("alice", None) > 0
    throttle.success("alice")
    assert throttle.retry_after("alice", None) == 0
    throttle.failure("bob", "a")
    assert throttle.retry_after("carol", "a") > 0  # three failures from "a" in all


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


def test_scope_limit_round_trips_and_needs_a_scope() -> None:
    limit = ScopeLimit.parse(["repository:team/*:pull,push", "registry:catalog:*"])
    assert ScopeLimit.parse(str(limit).split()) == limit
    with pytest.raises(ScopePatternError):
        ScopeLimit.parse([])

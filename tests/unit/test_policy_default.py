"""The default rules: own namespace, admin group, anonymous gets nothing."""

from __future__ import annotations

import pytest

from authcore.identity import Identity
from authcore.scope import Access, parse_scope, parse_scopes
from tokenserver.authz.acl import ACLPolicy
from tokenserver.authz.policy import Requester

ALICE = Identity("alice", "user", frozenset({"dev"}))
ADMIN = Identity("root", "user", frozenset({"admin"}))
ALL = frozenset({"pull", "push", "delete"})


def _grant(identity: Identity, *scopes: str) -> list[Access]:
    return ACLPolicy().filter(Requester(identity, "registry"), parse_scopes(scopes))


@pytest.mark.parametrize(
    ("scope", "actions"),
    [
        ("repository:alice/app:pull", {"pull"}),
        ("repository:alice/app:pull,push", {"pull", "push"}),
        ("repository:alice/app:pull,push,delete", ALL),
        ("repository:alice/deep/nested/app:delete", {"delete"}),
        ("repository:alice/app:*", ALL),
        ("repository(plugin):alice/app:pull", {"pull"}),
        ("repository:alice/app:pull,frobnicate", {"pull"}),
    ],
)
def test_own_namespace(scope: str, actions: set[str]) -> None:
    assert _grant(ALICE, scope) == [
        Access("repository", parse_scope(scope).name, frozenset(actions))
    ]


@pytest.mark.parametrize(
    "scope",
    [
        "repository:alice:pull",
        "repository:alicex/foo:pull",
        "repository:bob/x:pull",
        "repository:x/alice/foo:pull",
        "repository:localhost:5000/alice/foo:pull",
        "repository:alice/app:frobnicate",
        "registry:catalog:*",
        "plugin:alice/app:pull",
    ],
)
def test_outside_the_namespace_is_denied(scope: str) -> None:
    assert _grant(ALICE, scope) == []


def test_partial_grant_keeps_the_order_of_what_is_allowed() -> None:
    granted = _grant(
        ALICE, "repository:bob/x:pull", "repository:alice/a:push", "repository:alice/b:pull"
    )
    assert [str(a) for a in granted] == ["repository:alice/a:push", "repository:alice/b:pull"]


def test_admin_gets_everything_asked() -> None:
    granted = _grant(
        ADMIN,
        "registry:catalog:*",
        "repository:bob/x:pull,push,delete",
        "repository:anything:*",
    )
    assert granted == [
        Access("registry", "catalog", frozenset({"*"})),
        Access("repository", "bob/x", ALL),
        Access("repository", "anything", frozenset({"*"})),
    ]


def test_anonymous_gets_nothing() -> None:
    anonymous = Identity.anonymous()
    assert anonymous.subject == "" and anonymous.kind == "anonymous"
    assert _grant(anonymous, "repository:alice/app:pull", "registry:catalog:*") == []
    # Even an identity claiming the admin group but with no subject.
    assert _grant(Identity("", "user", frozenset({"admin"})), "registry:catalog:*") == []
    assert _grant(Identity("x", "anonymous", frozenset({"admin"})), "registry:catalog:*") == []


def test_no_scopes_no_grant() -> None:
    assert ACLPolicy().filter(Requester(ALICE, "registry"), []) == []

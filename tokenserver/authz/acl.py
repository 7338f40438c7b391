"""Ordered access rules in the shape of docker_auth's `acl` section.

Each requested scope is checked against the rules in order; the first rule
whose every `match` condition holds decides: its `actions` are granted (as
far as they were asked for), `[]` denies. No matching rule, nothing granted.

    - match: {account: "/.+/", name: "${account}/*"}
      actions: ["*"]
    - match: {type: repository, name: "team/*", labels: {groups: developers}}
      actions: [pull, push]
    - match: {ip: "10.0.0.0/8", service: registry}
      actions: [pull]
      comment: the office may pull everything
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, field_validator

from authcore.cache import Cache
from authcore.identity import Identity
from authcore.scope import Access
from tokenserver.authz.patterns import Pattern, PatternError, Values
from tokenserver.authz.policy import ADMIN_GROUP, Decision, Requester

__all__ = ["DEFAULT_ACL", "ACLEntry", "ACLPolicy", "MatchConditions", "Rule", "compile_rules"]

_ACTION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _check_pattern(value: str | None) -> str | None:
    if value is not None:
        try:
            Pattern(value)
        except PatternError as exc:
            raise ValueError(str(exc)) from None
    return value


class MatchConditions(BaseModel):
    """Conditions of one rule; an absent condition matches anything."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account: str | None = None
    type: str | None = None
    name: str | None = None
    service: str | None = None
    ip: str | None = None
    labels: dict[str, str] | None = None

    @field_validator("account", "type", "name", "service")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        return _check_pattern(value)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for pattern in (value or {}).values():
            _check_pattern(pattern)
        return value

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"{value!r} is not an address or CIDR network") from None
        return value


class ACLEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    match: MatchConditions
    actions: list[str]
    comment: str | None = None

    @field_validator("actions")
    @classmethod
    def _actions(cls, value: list[str]) -> list[str]:
        for action in value:
            if action != "*" and not (action and set(action) <= _ACTION_CHARS):
                raise ValueError(f"{action!r} is not an action (lower-case letters or '*')")
        return value


# The behaviour without configured rules: members of `admin` may do anything,
# every user owns the repositories under their own name, a CI token gets what
# its own scopes allow (a federated pipeline what its trust's do), anonymous
# nothing.
DEFAULT_ACL: tuple[ACLEntry, ...] = (
    ACLEntry(
        match=MatchConditions(account="/.+/", labels={"groups": ADMIN_GROUP, "kind": "user"}),
        actions=["*"],
        comment="members of the admin group may do anything",
    ),
    ACLEntry(
        match=MatchConditions(
            account="/.+/", type="repository", name="/^${account}/.+$/", labels={"kind": "user"}
        ),
        actions=["pull", "push", "delete"],
        comment="every user owns the repositories under their own name",
    ),
    ACLEntry(
        match=MatchConditions(account="/.+/", labels={"kind": "ci"}),
        actions=["*"],
        comment="CI tokens: as far as their own scopes reach",
    ),
    ACLEntry(
        match=MatchConditions(account="/.+/", labels={"kind": "federated"}),
        actions=["*"],
        comment="federated pipelines: as far as their trust's scopes reach",
    ),
)


@dataclass(frozen=True)
class Rule:
    """One compiled entry; `number` counts from 1 in the order written."""

    number: int
    entry: ACLEntry
    account: Pattern | None
    type: Pattern | None
    name: Pattern | None
    service: Pattern | None
    network: IPNetwork | None
    labels: tuple[tuple[str, Pattern], ...]
    actions: frozenset[str]

    @property
    def label(self) -> str:
        return f"rule {self.number}" + (f" ({self.entry.comment})" if self.entry.comment else "")

    def matches(self, requester: Requester, access: Access, values: Values) -> bool:
        identity = requester.identity
        for pattern, value in (
            (self.type, access.type),
            (self.name, access.name),
            (self.account, identity.subject),
            (self.service, requester.service),
        ):
            if pattern is not None and not pattern.matches(value, values):
                return False
        if self.network is not None and not _in_network(requester.ip, self.network):
            return False
        for key, pattern in self.labels:
            if not any(pattern.matches(v, values) for v in values.labels.get(key, ())):
                return False
        return True

    def grant(self, access: Access) -> frozenset[str]:
        if "*" in self.actions:
            return access.actions
        if "*" in access.actions:
            # "everything you allow me" (skopeo delete asks for `*`)
            return self.actions
        return access.actions & self.actions


def _in_network(ip: str | None, network: IPNetwork) -> bool:
    if not ip:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.version == network.version and address in network


def compile_rules(entries: Sequence[ACLEntry]) -> tuple[Rule, ...]:
    def pattern(value: str | None) -> Pattern | None:
        return None if value is None else Pattern(value)

    rules = []
    for number, entry in enumerate(entries, 1):
        m = entry.match
        rules.append(
            Rule(
                number=number,
                entry=entry,
                account=pattern(m.account),
                type=pattern(m.type),
                name=pattern(m.name),
                service=pattern(m.service),
                network=None if m.ip is None else ipaddress.ip_network(m.ip, strict=False),
                labels=tuple((k, Pattern(v)) for k, v in sorted((m.labels or {}).items())),
                actions=frozenset(entry.actions),
            )
        )
    return tuple(rules)


def identity_labels(identity: Identity) -> Mapping[str, Sequence[str]]:
    # `ACLPolicy.filter` keys its memo on what this reads: keep the two in step.
    labels: dict[str, Sequence[str]] = {"groups": sorted(identity.groups), "kind": [identity.kind]}
    trust = identity.attribute("trust")
    if trust is not None:
        labels["trust"] = [trust]
    return labels


# What `ACLPolicy.filter` remembers: the answers to this many distinct
# questions, each of at most this many scopes (docker asks for one or two).
MEMO_ENTRIES = 4096
MEMO_MAX_SCOPES = 8

_MemoKey = tuple[str, str, frozenset[str], str | None, str, str | None, tuple[Access, ...]]


class ACLPolicy:
    """The rules, in order. `filter` remembers its answers: they depend only on
    the question (who, from where, for which service, what) and on the rules,
    which never change for the life of a policy (a new ACL file makes a new
    policy)."""

    def __init__(self, entries: Sequence[ACLEntry] = DEFAULT_ACL) -> None:
        self.rules = compile_rules(entries)
        self._by_address = any(rule.network is not None for rule in self.rules)
        self._memo: Cache[_MemoKey, tuple[Access, ...]] = Cache(MEMO_ENTRIES)

    def __len__(self) -> int:
        return len(self.rules)

    def explain(self, requester: Requester, requested: Sequence[Access]) -> list[Decision]:
        labels = identity_labels(requester.identity)
        decisions = []
        for access in requested:
            values = Values(
                {
                    "account": requester.identity.subject,
                    "type": access.type,
                    "name": access.name,
                    "service": requester.service,
                },
                labels,
            )
            for rule in self.rules:
                if rule.matches(requester, access, values):
                    decisions.append(Decision(access, rule.grant(access), rule.number, rule.label))
                    break
            else:
                decisions.append(Decision(access, frozenset(), None, "no rule matched"))
        return decisions

    def filter(self, requester: Requester, requested: Sequence[Access]) -> list[Access]:
        if len(requested) > MEMO_MAX_SCOPES:
            return self._filter(requester, requested)
        identity = requester.identity
        key = (
            identity.subject,
            identity.kind,
            identity.groups,
            identity.attribute("trust"),
            requester.service,
            requester.ip if self._by_address else None,
            tuple(requested),
        )
        granted = self._memo.get(key)
        if granted is None:
            granted = self._memo.put(key, tuple(self._filter(requester, requested)))
        return list(granted)

    def _filter(self, requester: Requester, requested: Sequence[Access]) -> list[Access]:
        return [
            d.requested.with_actions(d.actions)
            for d in self.explain(requester, requested)
            if d.actions
        ]

"""ACL rules: patterns, placeholders, conditions, order, deny, reload."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from authcore.identity import Identity, Kind
from authcore.scope import parse_scopes
from tokenserver.authz.acl import ACLEntry, ACLPolicy
from tokenserver.authz.acl_file import ACLFile, read_acl_file
from tokenserver.authz.patterns import Pattern, PatternError, Values
from tokenserver.authz.policy import Requester
from tokenserver.config import ConfigError, load_config

NO_VALUES = Values({}, {})
ENTRIES = TypeAdapter(list[ACLEntry])


def policy(rules: list[dict[str, Any]]) -> ACLPolicy:
    return ACLPolicy(ENTRIES.validate_python(rules))


def grant(
    rules: list[dict[str, Any]] | ACLPolicy,
    *scopes: str,
    user: str = "alice",
    groups: Sequence[str] = (),
    kind: Kind = "user",
    service: str = "registry",
    ip: str | None = "127.0.0.1",
) -> dict[str, set[str]]:
    acl = rules if isinstance(rules, ACLPolicy) else policy(rules)
    requester = Requester(Identity(user, kind, frozenset(groups)), service, ip)
    return {
        f"{a.type}:{a.name}": set(a.actions) for a in acl.filter(requester, parse_scopes(scopes))
    }


# -- patterns ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("team/*", "team/app", True),
        ("team/*", "team/a/b", False),  # `*` never crosses a slash (Go path.Match)
        ("team/*", "team/", True),
        ("*", "", True),
        ("team/?pp", "team/app", True),
        ("team/?pp", "team//pp", False),
        ("team/[a-c]pp", "team/bpp", True),
        ("team/[a-c]pp", "team/dpp", False),
        ("team/[^a-c]pp", "team/dpp", True),
        ("team/[^a-c]pp", "team/app", False),
        ("a[/]b", "a/b", False),
        (r"lit\*", "lit*", True),
        (r"lit\*", "litx", False),
        ("a.b", "axb", False),
        ("team/app", "team/app", True),
        ("team/app", "team/app2", False),
        ("/^team\\/.+$/", "team/a/b", True),
        ("/^team\\/.+$/", "xteam/a", False),
        ("/app/", "team/myapp/x", True),  # unanchored, like Go's regexp.Match
        ("/^(dev|ops)$/", "ops", True),
        ("/^(dev|ops)$/", "devops", False),
        ("/^admin$/", "admin\n", False),  # RE2's `$` is the end (Python's takes a newline)
        ("/^\\d+$/", "\u0661\u0662", False),  # Go's `\d` is ASCII (Python's any digit)
        ("/(?i)^TEAM/", "team/x", True),
        ("/^[[:alpha:]]+$/", "team", True),
        ("//", "//", True),  # too short to be a regex: a literal glob
        ("a[.-0]b", "a/b", False),  # a class's range never takes in '/'
        ("a[.-0]b", "a0b", True),
        ("a[/-0]b", "a/b", False),
        ("a[^x]b", "a/b", False),
        ("[$^]\\{(x)}+", "^{(x)}+", True),  # RE2's metacharacters are plain in a glob
        ("team/*", "team/\ud800", False),  # a lone surrogate (JSON "\ud800") is no text
        ("/^team/", "team/\ud800", False),
    ],
)
def test_pattern_semantics(pattern: str, value: str, expected: bool) -> None:
    assert Pattern(pattern).matches(value, NO_VALUES) is expected


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("/^(a+)+$/", "a" * 10_000 + "!", False),
        ("/^(a+)+$/", "a" * 10_000, True),
        ("/^([a-z]+)+$/", "a" * 250 + "0", False),
        ("/(x+x+)+y/", "x" * 10_000, False),
        ("/^(a|aa)+$/", "a" * 10_000 + "b", False),
        ("*a*a*a*a*a*a*a*a*a*a*b", "a" * 10_000, False),
        ("*a*a*a*a*a*a*a*a*a*a*a", "a" * 10_000, True),
    ],
)
def test_catastrophic_patterns_match_in_linear_time(
    pattern: str, value: str, expected: bool
) -> None:
    """Python's `re` takes seconds at thirty characters and forever at these; RE2 does not."""
    assert Pattern(pattern).matches(value, NO_VALUES) is expected


@pytest.mark.parametrize(
    "pattern",
    [
        "team/[a-",
        "team/[",
        "trailing\\",
        "/(unclosed/",
        "${nope}",
        "${labels}",
        "${account:x}",
        "/a{99999999999}/",  # OverflowError in Python's `re`; Go refuses the count
        "/a{1,99999999999}/",
        "/a{1001}/",
        "/" + "(" * 500 + "a" + ")" * 500 + "/",  # RecursionError in Python's `re`
        "/" + "(?:" * 101 + "a" + ")" * 101 + "/",
        "/^(?=team)/",  # look-around: not RE2, not Go
        "/(a)\\1/",  # back-references likewise
        "/\\Z/",
        "/x\ud800/",
    ],
)
def test_bad_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(PatternError):
        Pattern(pattern)


@pytest.mark.parametrize(
    "pattern",
    [
        "/a{1000}/",
        "/a{01}/",  # a leading zero: not a count, literal braces, as in Go
        "/\\{99999999999}/",
        "/[{99999999999}]/",
        "/\\Q{99999999999}(\\E/",
        "/" + "(" * 100 + "a" + ")" * 100 + "/",
        "/" + "\\(" * 500 + "/",
        "/\\x{10000}\\p{Greek}/",
    ],
)
def test_what_go_takes_is_taken(pattern: str) -> None:
    Pattern(pattern)


def test_placeholder_values_are_escaped() -> None:
    # An account named `a*` owns `a*/...` only, never `abc/...`.
    star = Values({"account": "a*"}, {})
    assert not Pattern("${account}/*").matches("abc/x", star)
    dotted = Values({"account": "a.b"}, {})
    assert Pattern("/^${account}\\/.+$/").matches("a.b/x", dotted)
    assert not Pattern("/^${account}\\/.+$/").matches("axb/x", dotted)
    assert Pattern("${account}/*").matches("a.b/x", dotted)


@pytest.mark.parametrize(
    "account",
    [
        "".join(chr(c) for c in range(0x20, 0x7F)),
        "\x00\t\n\x7f-]^\\",
        "é中😀 x",
        "99999999999",
    ],
)
def test_every_character_of_a_value_is_itself_in_re2(account: str) -> None:
    values = Values({"account": account}, {})
    outsider = "\x01"  # in none of the accounts
    assert Pattern("/^${account}$/").matches(account, values)
    assert not Pattern("/^${account}$/").matches(outsider, values)
    assert Pattern("/^x${account}$/").matches("x" + account, values)
    assert Pattern("/^[${account}]+$/").matches(account, values)
    assert not Pattern("/^[${account}]+$/").matches(outsider, values)
    assert Pattern("/^a{${account}}$/").matches("a{" + account + "}", values)
    assert Pattern("${account}").matches(account, values)


def test_a_value_that_makes_the_pattern_too_large_matches_nothing() -> None:
    # `x` stands in for the account when the rule is loaded; a long account
    # repeated four thousand times is a program RE2 will not build.
    pattern = Pattern("/^(${account}${account}${account}${account}){1000}$/")
    long = Values({"account": "a" * 250}, {})
    assert not pattern.matches("a" * 1_000_000, long)
    assert not pattern.matches("a" * 1_000_000, long)  # refused once, remembered
    assert pattern.matches("b" * 4000, Values({"account": "b"}, {}))


# -- rules ------------------------------------------------------------------

RULES: list[dict[str, Any]] = [
    {"match": {"account": "/.+/", "name": "${account}/*"}, "actions": ["*"]},
    {
        "match": {"type": "repository", "name": "team/*", "labels": {"groups": "developers"}},
        "actions": ["pull", "push"],
    },
    {
        "match": {"type": "repository", "name": "team/*", "labels": {"groups": "ci"}},
        "actions": ["pull"],
    },
]


def test_account_placeholder_owns_namespace() -> None:
    assert grant(RULES, "repository:alice/app:pull,push") == {
        "repository:alice/app": {"pull", "push"}
    }
    assert grant(RULES, "repository:bob/app:pull") == {}
    assert grant(RULES, "repository:alice/a/b:pull") == {}  # one level, as globbed


def test_group_labels() -> None:
    assert grant(RULES, "repository:team/app:pull,push", groups=["developers"]) == {
        "repository:team/app": {"pull", "push"}
    }
    assert grant(RULES, "repository:team/app:pull,push", groups=["ci"]) == {
        "repository:team/app": {"pull"}
    }
    assert grant(RULES, "repository:team/app:pull", groups=["qa"]) == {}


def test_groups_placeholder_in_name() -> None:
    rules = [{"match": {"name": "${labels:groups}/*"}, "actions": ["pull"]}]
    assert grant(rules, "repository:ops/x:pull", groups=["dev", "ops"]) == {
        "repository:ops/x": {"pull"}
    }
    assert grant(rules, "repository:qa/x:pull", groups=["dev", "ops"]) == {}


def test_first_matching_rule_wins() -> None:
    rules = [
        {"match": {"name": "team/secret"}, "actions": ["pull"]},
        {"match": {"name": "team/*"}, "actions": ["pull", "push"]},
    ]
    assert grant(rules, "repository:team/secret:pull,push", "repository:team/app:push") == {
        "repository:team/secret": {"pull"},
        "repository:team/app": {"push"},
    }


def test_explicit_deny_stops_later_rules() -> None:
    rules = [
        {"match": {"account": "mallory"}, "actions": []},
        {"match": {}, "actions": ["pull"]},
    ]
    assert grant(rules, "repository:x/y:pull", user="mallory") == {}
    assert grant(rules, "repository:x/y:pull", user="alice") == {"repository:x/y": {"pull"}}
    decisions = policy(rules).explain(
        Requester(Identity("mallory"), "registry"), parse_scopes(["repository:x/y:pull"])
    )
    assert [(d.rule, d.actions) for d in decisions] == [(1, frozenset())]


def test_no_rule_grants_nothing() -> None:
    rules = [{"match": {"account": "bob"}, "actions": ["*"]}]
    assert grant(rules, "repository:x/y:pull") == {}
    decisions = policy(rules).explain(
        Requester(Identity("alice"), "registry"), parse_scopes(["repository:x/y:pull"])
    )
    assert decisions[0].rule is None and decisions[0].reason == "no rule matched"


@pytest.mark.parametrize(
    ("cidr", "ip", "expected"),
    [
        ("127.0.0.0/8", "127.0.0.1", True),
        ("127.0.0.0/8", "127.1.2.3", True),
        ("10.0.0.0/8", "127.0.0.1", False),
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "127.0.0.2", False),
        ("127.0.0.0/8", "::ffff:127.0.0.1", True),
        ("::1/128", "::1", True),
        ("::1/128", "127.0.0.1", False),
        ("127.0.0.0/8", None, False),
        ("127.0.0.0/8", "not-an-ip", False),
    ],
)
def test_ip_condition(cidr: str, ip: str | None, expected: bool) -> None:
    rules = [{"match": {"ip": cidr}, "actions": ["pull"]}]
    assert bool(grant(rules, "repository:x/y:pull", ip=ip)) is expected


def test_service_type_and_kind_conditions() -> None:
    rules = [
        {"match": {"service": "prod-*", "type": "registry", "name": "catalog"}, "actions": ["*"]},
        {"match": {"labels": {"kind": "ci"}}, "actions": ["pull"]},
    ]
    assert grant(rules, "registry:catalog:*", service="prod-eu") == {"registry:catalog": {"*"}}
    assert grant(rules, "registry:catalog:*", service="staging") == {}
    assert grant(rules, "repository:x/y:pull,push", kind="ci") == {"repository:x/y": {"pull"}}
    assert grant(rules, "repository:x/y:pull,push", kind="user") == {}


def test_anonymous_account_is_empty() -> None:
    rules = [
        {"match": {"account": "/.+/"}, "actions": ["pull", "push"]},
        {"match": {"labels": {"kind": "anonymous"}, "name": "public/*"}, "actions": ["pull"]},
    ]
    assert grant(rules, "repository:public/x:pull,push", user="", kind="anonymous") == {
        "repository:public/x": {"pull"}
    }
    assert grant(rules, "repository:other/x:pull", user="", kind="anonymous") == {}


def test_wildcards_on_either_side() -> None:
    every = [{"match": {}, "actions": ["*"]}]
    some = [{"match": {}, "actions": ["pull", "delete"]}]
    assert grant(every, "repository:x/y:pull,push") == {"repository:x/y": {"pull", "push"}}
    assert grant(every, "repository:x/y:*") == {"repository:x/y": {"*"}}
    # A client asking for `*` gets what the rule allows, no more.
    assert grant(some, "repository:x/y:*") == {"repository:x/y": {"pull", "delete"}}
    assert grant(some, "repository:x/y:push") == {}


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"match": {"name": "/(/"}}, "actions"),
        ({"match": {"name": "/(/"}, "actions": []}, "match.name"),
        ({"match": {"ip": "10.0.0.0/33"}, "actions": []}, "match.ip"),
        ({"match": {"ip": "example.com"}, "actions": []}, "match.ip"),
        ({"match": {"acount": "x"}, "actions": []}, "unknown key"),
        ({"match": {}, "actions": ["Pull"]}, "actions"),
        ({"match": {}, "actions": [""]}, "actions"),
        ({"match": {"labels": {"groups": "${wat}"}}, "actions": []}, "labels"),
        ({"match": {"name": "/a{99999999999}/"}, "actions": []}, "match.name"),
        ({"match": {"account": "/" + "(" * 500 + "/"}, "actions": []}, "match.account"),
        ({"match": {"labels": {"groups": "/(?!ops)/"}}, "actions": []}, "match.labels"),
    ],
)
def test_bad_rules_are_refused_with_the_key(
    tmp_path: Path, rule: dict[str, Any], message: str
) -> None:
    path = tmp_path / "acl.yaml"
    path.write_text(yaml.safe_dump([{"match": {}, "actions": ["pull"]}, rule]))
    with pytest.raises(ConfigError) as info:
        read_acl_file(path)
    assert "rule 2" in str(info.value) and message in str(info.value)


def test_acl_file_accepts_a_pasted_acl_section(tmp_path: Path) -> None:
    path = tmp_path / "acl.yaml"
    path.write_text(yaml.safe_dump({"acl": RULES}))
    assert len(read_acl_file(path)) == 3
    path.write_text(yaml.safe_dump({"acl": RULES, "users": {}}))
    with pytest.raises(ConfigError, match="must be a list"):
        read_acl_file(path)
    path.write_text("acl: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_acl_file(path)


def _replace(path: Path, rules: object) -> None:
    """Write as an editor would (new file, rename), so the change is always seen."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(rules if isinstance(rules, str) else yaml.safe_dump(rules))
    os.replace(tmp, path)


def test_acl_file_hot_reload_and_bad_file_kept_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "acl.yaml"
    _replace(path, [{"match": {"name": "a/*"}, "actions": ["pull"]}])
    acl = ACLFile(path)
    requester = Requester(Identity("alice"), "registry")
    scopes = parse_scopes(["repository:a/x:pull", "repository:b/x:pull"])
    assert [a.name for a in acl.filter(requester, scopes)] == ["a/x"]

    _replace(path, [{"match": {"name": "b/*"}, "actions": ["pull"]}])
    assert [a.name for a in acl.filter(requester, scopes)] == ["b/x"]

    caplog.set_level(logging.INFO, logger="tokenserver.authz.acl_file")
    _replace(path, [{"match": {"ip": "nonsense"}, "actions": ["pull"]}])
    assert [a.name for a in acl.filter(requester, scopes)] == ["b/x"]
    assert any(
        r.levelno == logging.ERROR and "previous rules stay" in r.getMessage()
        for r in caplog.records
    )
    _replace(path, "- [unbalanced")
    assert [a.name for a in acl.filter(requester, scopes)] == ["b/x"]

    path.unlink()
    assert [a.name for a in acl.filter(requester, scopes)] == ["b/x"]

    _replace(path, [{"match": {}, "actions": ["pull"]}])
    assert [a.name for a in acl.filter(requester, scopes)] == ["a/x", "b/x"]


@pytest.mark.parametrize(
    "bad",
    [
        [{"match": {"name": "/a{99999999999}/"}, "actions": ["pull"]}],
        [{"match": {"name": "/" + "(" * 500 + "a" + ")" * 500 + "/"}, "actions": ["pull"]}],
        [{"match": {"name": "/^(?=b)/"}, "actions": ["pull"]}],
        "[" * 5000 + "]" * 5000,  # deeper than PyYAML's recursion goes
    ],
)
def test_a_reloaded_file_that_re2_refuses_keeps_the_rules(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, bad: object
) -> None:
    path = tmp_path / "acl.yaml"
    _replace(path, [{"match": {"name": "/^(a+)+$/"}, "actions": ["pull"]}])
    acl = ACLFile(path)
    requester = Requester(Identity("alice"), "registry")
    scopes = parse_scopes(
        ["repository:" + "a" * 250 + "0:pull", "repository:" + "a" * 255 + ":pull"]
    )
    assert [a.name for a in acl.filter(requester, scopes)] == ["a" * 255]
    caplog.set_level(logging.INFO, logger="tokenserver.authz.acl_file")
    _replace(path, bad)
    assert [a.name for a in acl.filter(requester, scopes)] == ["a" * 255]
    (refused,) = [r for r in caplog.records if "previous rules stay" in r.getMessage()]
    assert refused.levelno == logging.ERROR
    reason: str = refused.reason  # type: ignore[attr-defined]
    assert "rule 1 match.name" in reason or "nested too deeply" in reason


def test_a_bad_file_at_start_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "acl.yaml"
    _replace(path, [{"match": {"nme": "x"}, "actions": []}])
    with pytest.raises(ConfigError, match=r"rule 1 match\.nme: unknown key"):
        ACLFile(path)
    with pytest.raises(ConfigError, match="No such file"):
        ACLFile(tmp_path / "missing.yaml")
    _replace(
        path, [{"match": {}, "actions": []}, {"match": {"name": "/a{99999999999}/"}, "actions": []}]
    )
    with pytest.raises(ConfigError, match=r"rule 2 match\.name: .*invalid repeat count"):
        ACLFile(path)


def test_rules_in_the_config(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"acl": RULES}))
    config = load_config(path, environ={})
    assert config.acl is not None and len(config.acl) == 3
    path.write_text(yaml.safe_dump({"acl": RULES, "acl_file": "rules.yaml"}))
    with pytest.raises(ConfigError, match="acl or acl_file"):
        load_config(path, environ={})
    path.write_text(yaml.safe_dump({"acl_file": "rules.yaml"}))
    assert load_config(path, environ={}).acl_file == tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"acl": [{"match": {"ip": "x"}, "actions": []}]}))
    with pytest.raises(ConfigError, match=r"acl\.0\.match\.ip"):
        load_config(path, environ={})
    nested = "/" + "(" * 500 + "a" + ")" * 500 + "/"
    path.write_text(yaml.safe_dump({"acl": [{"match": {"name": nested}, "actions": []}]}))
    with pytest.raises(ConfigError, match=r"acl\.0\.match\.name: .*nest deeper than 100"):
        load_config(path, environ={})


def test_validation_error_type() -> None:
    with pytest.raises(ValidationError):
        ACLEntry.model_validate({"match": {"name": "[x"}, "actions": []})


# -- the memo of answers ------------------------------------------------------------


MEMO_RULES = [
    {"match": {"ip": "10.0.0.0/8"}, "actions": ["pull"]},
    {"match": {"account": "alice", "name": "${account}/*"}, "actions": ["*"]},
    {"match": {"labels": {"groups": "ops"}}, "actions": ["pull", "push"]},
]


def test_remembered_answers_equal_the_rules_answers() -> None:
    acl = policy(MEMO_RULES)
    questions = [
        {"user": "alice", "ip": "127.0.0.1"},
        {"user": "alice", "ip": "10.1.2.3"},
        {"user": "bob", "ip": "127.0.0.1"},
        {"user": "bob", "ip": "127.0.0.1", "groups": ["ops"]},
        {"user": "bob", "ip": "127.0.0.1", "kind": "ci"},
        {"user": "bob", "ip": None},
    ]
    for _ in range(3):  # the first round fills the memo, the others read it
        for question in questions:
            for scope in ("repository:alice/app:pull,push", "repository:bob/app:push"):
                fresh = grant(MEMO_RULES, scope, **question)  # type: ignore[arg-type]
                assert grant(acl, scope, **question) == fresh, (question, scope)  # type: ignore[arg-type]
    assert grant(acl, "repository:alice/app:pull,push", user="alice", ip="10.1.2.3") == {
        "repository:alice/app": {"pull"}
    }
    assert grant(acl, "repository:alice/app:push", user="alice", ip="127.0.0.1") == {
        "repository:alice/app": {"push"}
    }
    assert grant(acl, "repository:bob/app:push", user="bob", groups=["ops"]) == {
        "repository:bob/app": {"push"}
    }
    assert grant(acl, "repository:bob/app:push", user="bob") == {}


def test_the_memo_of_answers_is_bounded_whatever_is_asked() -> None:
    from tokenserver.authz import acl as acl_module

    acl = policy(MEMO_RULES)
    for n in range(acl_module.MEMO_ENTRIES + 500):
        assert grant(acl, f"repository:alice/r{n}:push", user="alice") == {
            f"repository:alice/r{n}": {"push"}
        }
    assert len(acl._memo) == acl_module.MEMO_ENTRIES
    # More scopes than the memo takes in one question: answered, not remembered.
    many = [f"repository:alice/m{n}:pull" for n in range(acl_module.MEMO_MAX_SCOPES + 1)]
    before = dict(acl._memo._entries)
    assert len(grant(acl, *many, user="alice")) == len(many)
    assert dict(acl._memo._entries) == before


def test_the_caller_cannot_change_a_remembered_answer() -> None:
    acl = policy(MEMO_RULES)
    requester = Requester(Identity("alice", "user"), "registry", "127.0.0.1")
    asked = parse_scopes(["repository:alice/app:pull"])
    first = acl.filter(requester, asked)
    first.clear()
    assert [str(a) for a in acl.filter(requester, asked)] == ["repository:alice/app:pull"]

"""The scope grammar (SPEC D12): parse, format, merge, and round-trip properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authcore.scope import (
    MAX_NAME_LENGTH,
    Access,
    ScopeError,
    format_scopes,
    merge,
    parse_scope,
    parse_scopes,
)


def test_parse_plain_repository_scope() -> None:
    assert parse_scope("repository:foo/bar:pull,push") == Access(
        "repository", "foo/bar", frozenset({"pull", "push"})
    )


def test_parse_name_with_host_and_port() -> None:
    access = parse_scope("repository:localhost:5000/foo/bar:pull,push")
    assert access.type == "repository"
    assert access.name == "localhost:5000/foo/bar"
    assert access.actions == frozenset({"pull", "push"})


def test_class_is_accepted_and_ignored() -> None:
    assert parse_scope("repository(plugin):x:pull") == Access(
        "repository", "x", frozenset({"pull"})
    )


def test_wildcard_action() -> None:
    access = parse_scope("registry:catalog:*")
    assert access == Access("registry", "catalog", frozenset({"*"}))
    assert access.allows("pull") and access.allows("anything")
    assert not parse_scope("repository:a/b:pull").allows("push")


def test_several_scopes_in_one_value_and_repeated_values() -> None:
    got = parse_scopes(["repository:a/b:pull repository:c:push", "registry:catalog:*"])
    assert got == [
        Access("repository", "a/b", frozenset({"pull"})),
        Access("repository", "c", frozenset({"push"})),
        Access("registry", "catalog", frozenset({"*"})),
    ]


def test_empty_values_and_extra_spaces_yield_nothing() -> None:
    assert parse_scopes(["", "  "]) == []
    assert parse_scopes(["repository:a:pull  repository:b:pull"]) == [
        Access("repository", "a", frozenset({"pull"})),
        Access("repository", "b", frozenset({"pull"})),
    ]


def test_empty_action_is_allowed_by_the_grammar_and_dropped() -> None:
    assert parse_scope("repository:a:").actions == frozenset()
    assert parse_scope("repository:a:pull,,push").actions == frozenset({"pull", "push"})


def test_format_is_sorted_and_space_separated() -> None:
    accesses = [
        Access("repository", "localhost:5000/a", frozenset({"push", "pull"})),
        Access("registry", "catalog", frozenset({"*"})),
    ]
    assert format_scopes(accesses) == "repository:localhost:5000/a:pull,push registry:catalog:*"
    assert format_scopes([]) == ""


@pytest.mark.parametrize(
    "text",
    [
        "",
        "repository",
        "repository:foo",  # missing actions
        ":foo:pull",  # empty type
        "repository::pull",  # empty name
        "Repository:foo:pull",  # uppercase type
        "repository:Foo:pull",  # uppercase name
        "repository:foo/Bar:pull",  # uppercase path component
        "repository:foo:PULL",  # uppercase action
        "repository:foo:pull;push",
        "repository:foo:pu-ll",
        "repository:foo:pull,*x",
        "repository:foo/:pull",
        "repository:/foo:pull",
        "repository:foo//bar:pull",
        "repository:foo bar:pull",
        "repository:localhost:5000:pull",  # host:port alone is not a name
        "repository(Plugin):foo:pull",
        "repository():foo:pull",
        "repo-sitory:foo:pull",
        "repository:" + "a" * (MAX_NAME_LENGTH + 1) + ":pull",
    ],
)
def test_malformed_scopes_raise(text: str) -> None:
    with pytest.raises(ScopeError):
        parse_scope(text)


def test_name_at_the_length_limit_is_accepted() -> None:
    name = "a" * MAX_NAME_LENGTH
    assert parse_scope(f"repository:{name}:pull").name == name


def test_malformed_scope_in_a_list_raises() -> None:
    with pytest.raises(ScopeError):
        parse_scopes(["repository:a:pull repository:B:pull"])


def test_merge_unions_overlapping_entries_in_first_seen_order() -> None:
    # containerd: `repository:N:pull repository:N:pull,push`
    merged = merge(
        parse_scopes(
            [
                "repository:n:pull repository:n:pull,push",
                "registry:catalog:* repository:m:delete repository:n:delete",
            ]
        )
    )
    assert merged == [
        Access("repository", "n", frozenset({"pull", "push", "delete"})),
        Access("registry", "catalog", frozenset({"*"})),
        Access("repository", "m", frozenset({"delete"})),
    ]


def test_merge_keeps_types_apart() -> None:
    merged = merge(
        [Access("repository", "x", frozenset({"pull"})), Access("plugin", "x", frozenset({"pull"}))]
    )
    assert len(merged) == 2


# ---- properties -------------------------------------------------------------

_alnum = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6)
_separator = st.sampled_from([".", "_", "__", "-", "--"])


@st.composite
def _path_component(draw: st.DrawFn) -> str:
    parts = draw(st.lists(_alnum, min_size=1, max_size=3))
    out = parts[0]
    for part in parts[1:]:
        out += draw(_separator) + part
    return out


@st.composite
def _host(draw: st.DrawFn) -> str:
    edge = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    labels = []
    for _ in range(draw(st.integers(1, 3))):
        label = draw(st.text(alphabet=edge, min_size=1, max_size=3))
        if draw(st.booleans()):
            label += draw(st.text(alphabet=edge + "-", max_size=3)) + draw(
                st.text(alphabet=edge, min_size=1, max_size=1)
            )
        labels.append(label)
    host = ".".join(labels)
    if draw(st.booleans()):
        host += f":{draw(st.integers(1, 65535))}"
    return host


@st.composite
def _names(draw: st.DrawFn) -> str:
    path = "/".join(draw(st.lists(_path_component(), min_size=1, max_size=4)))
    # At most ~130 characters, well under MAX_NAME_LENGTH.
    return f"{draw(_host())}/{path}" if draw(st.booleans()) else path


_actions = st.frozensets(
    st.one_of(st.just("*"), st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)),
    max_size=4,
)
_types = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)


@st.composite
def _accesses(draw: st.DrawFn) -> Access:
    return Access(draw(_types), draw(_names()), draw(_actions))


@st.composite
def _scope_texts(draw: st.DrawFn) -> str:
    """Valid scope strings as clients write them: classes, any action order, repeats."""
    items = []
    for access in draw(st.lists(_accesses(), min_size=1, max_size=4)):
        rtype = access.type
        if draw(st.booleans()):
            rtype += f"({draw(_types)})"
        actions = draw(st.permutations(sorted(access.actions)))
        if draw(st.booleans()):
            actions = [*actions, *actions]
        items.append(f"{rtype}:{access.name}:{','.join(actions)}")
    return " ".join(items)


@given(_names())
def test_generated_names_are_valid(name: str) -> None:
    assert parse_scope(f"repository:{name}:pull").name == name


@given(_accesses())
def test_parse_of_str_round_trips(access: Access) -> None:
    assert parse_scope(str(access)) == access


@given(_scope_texts())
def test_format_of_parse_is_stable(text: str) -> None:
    once = format_scopes(parse_scopes([text]))
    assert format_scopes(parse_scopes([once])) == once
    assert parse_scopes([once]) == parse_scopes([text])

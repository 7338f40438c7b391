"""WWW-Authenticate as upstreams send it, and as they should not: RFC 7235's grammar, bounded."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_proxy.upstreams.challenge import (
    MAX_HEADER_BYTES,
    MAX_PARAMS,
    BadChallenge,
    Challenge,
    parse_challenges,
)


def test_docker_hubs_challenge() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/alpine:pull"'
    )
    assert parse_challenges(header) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:library/alpine:pull",
            },
        )
    ]


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (r'Basic realm="a \"quoted\" word"', 'a "quoted" word'),
        (r'Basic realm="back\\slash"', "back\\slash"),
        (r'Basic realm="\a\b\c"', "abc"),
        ('Basic realm=""', ""),
        ('Basic realm="comma, and = sign"', "comma, and = sign"),
        ("Basic realm=token-value", "token-value"),
        ('Basic realm="caf\xe9"', "caf\xe9"),
    ],
)
def test_quoted_strings_and_their_escapes(header: str, value: str) -> None:
    assert parse_challenges(header) == [Challenge("basic", {"realm": value})]


def test_several_challenges_in_one_header_case_insensitive() -> None:
    header = (
        'Newauth realm="apps", type=1, title="Login to \\"apps\\"", '
        'BASIC REALM="simple", Negotiate abc+/==, bearer'
    )
    assert parse_challenges(header) == [
        Challenge("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}),
        Challenge("basic", {"realm": "simple"}),
        Challenge("negotiate", token68="abc+/=="),
        Challenge("bearer"),
    ]


def test_spaces_and_empty_list_elements_are_allowed() -> None:
    header = ' , Bearer  realm = "r" ,, error=invalid_token , ,Basic,'
    assert parse_challenges(header) == [
        Challenge("bearer", {"realm": "r", "error": "invalid_token"}),
        Challenge("basic"),
    ]
    assert parse_challenges("") == []


@pytest.mark.parametrize(
    "header",
    [
        '"Bearer"',
        "=realm",
        'Bearer realm="unterminated',
        'Bearer realm="a" service="b"',
        'Bearer realm="a", realm="b"',
        'Bearer realm="a", REALM="b"',
        'Bearer realm=a"b"',
        'Bearer realm="new\nline"',
        'Bearer realm="nul\x00"',
        'Bearer realm="x"; scope="y"',
        "Bearer (comment)",
    ],
)
def test_junk_is_a_bad_challenge(header: str) -> None:
    with pytest.raises(BadChallenge):
        parse_challenges(header)


def test_a_word_and_equals_signs_alone_are_a_token68() -> None:
    # So a realm without a value is no realm: the client refuses such a Bearer challenge.
    assert parse_challenges("Bearer realm=") == [Challenge("bearer", token68="realm=")]


def test_a_header_over_8_kib_is_refused_unread() -> None:
    fits = 'Basic realm="' + "a" * (MAX_HEADER_BYTES - 14) + '"'
    assert len(fits) == MAX_HEADER_BYTES
    assert parse_challenges(fits)[0].params["realm"] == "a" * (MAX_HEADER_BYTES - 14)
    with pytest.raises(BadChallenge, match="longer than 8192 bytes"):
        parse_challenges(fits + " ")
    with pytest.raises(BadChallenge):  # counted in bytes, not characters
        parse_challenges('Basic realm="' + "\xe9" * (MAX_HEADER_BYTES // 2) + '"')


def test_more_than_20_parameters_are_refused_in_one_challenge_or_in_all() -> None:
    params = ", ".join(f"p{i}=v" for i in range(MAX_PARAMS))
    assert len(parse_challenges(f"Bearer {params}")[0].params) == MAX_PARAMS
    with pytest.raises(BadChallenge, match="more than 20 parameters"):
        parse_challenges(f"Bearer {params}, extra=1")
    with pytest.raises(BadChallenge, match="more than 20 parameters"):
        parse_challenges(f"Bearer {params}, Basic realm=r")


def test_a_message_never_repeats_the_header() -> None:
    with pytest.raises(BadChallenge) as caught:
        parse_challenges('Bearer realm="secret-looking-value", realm="again"')
    assert "secret-looking-value" not in str(caught.value)


@given(st.text(max_size=300))
def test_any_text_is_challenges_or_a_bad_challenge(header: str) -> None:
    try:
        challenges = parse_challenges(header)
    except BadChallenge:
        return
    for challenge in challenges:
        assert challenge.scheme == challenge.scheme.lower()
        assert len(challenge.params) <= MAX_PARAMS


_token = st.from_regex(r"[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,10}", fullmatch=True)
_quotable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)


@given(
    scheme=_token,
    params=st.dictionaries(_token.map(str.lower), _quotable, min_size=1, max_size=MAX_PARAMS),
)
def test_what_is_quoted_is_read_back(scheme: str, params: dict[str, str]) -> None:
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    header = f"{scheme} " + ", ".join(f"{name}={quoted(value)}" for name, value in params.items())
    assert parse_challenges(header) == [Challenge(scheme.lower(), params)]

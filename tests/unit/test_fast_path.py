"""The warm path's own spellings equal the ordinary ones, byte for byte."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from authcore.claims import ClaimSet
from authcore.scope import Access
from tokenserver.fast_path import SecondStamps, claims_json, token_answer

AWKWARD = ["alice", "Ünïcødé-名前", 'quote"back\\slash', "tab\tnew\nline\x00", "\ud800x"]


@pytest.mark.parametrize("subject", AWKWARD)
def test_claims_json_is_the_claims_dict(subject: str) -> None:
    claims = ClaimSet(
        issuer='iss "one"',
        subject=subject,
        audience="registry",
        expires_at=2_000_000_300,
        not_before=2_000_000_000,
        issued_at=2_000_000_000,
        jwt_id="abc-_",
        access=(
            Access("repository", "a/b", frozenset({"push", "pull"})),
            Access("registry", "catalog", frozenset({"*"})),
            Access("repository", "empty", frozenset()),
        ),
    )
    text = claims_json(claims)
    assert text.isascii()
    assert json.loads(text) == claims.to_dict()
    assert text == json.dumps(claims.to_dict(), separators=(",", ":"))
    assert claims_json(ClaimSet(**{**claims.__dict__, "access": ()})).endswith('"access":[]}')


@pytest.mark.parametrize("text", AWKWARD)
@pytest.mark.parametrize(
    "names", [(), ("scope",), ("scope", "issued_token_type"), ("scope", "refresh_token")]
)
def test_token_answer_is_its_dict(text: str, names: tuple[str, ...]) -> None:
    extra = [(name, f"{name}-{text}") for name in names]
    answer = token_answer(f"tok-{text}", 300, "2031-05-06T07:08:09Z", extra)
    expected = {
        "token": f"tok-{text}",
        "access_token": f"tok-{text}",
        "token_type": "Bearer",
        "expires_in": 300,
        "issued_at": "2031-05-06T07:08:09Z",
        **dict(extra),
    }
    assert bytes(answer.body) == json.dumps(expected, separators=(",", ":")).encode()
    assert answer.raw_headers == [
        (b"content-length", b"%d" % len(answer.body)),
        (b"content-type", b"application/json"),
        (b"cache-control", b"no-store"),
        (b"pragma", b"no-cache"),
    ]


def test_second_stamps_are_strftime() -> None:
    stamps = SecondStamps()
    start = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    for seconds in (0, 0, 1, 61, 0, 86400 * 400):
        at = start + dt.timedelta(seconds=seconds)
        assert stamps.at(at, int(at.timestamp())) == at.strftime("%Y-%m-%dT%H:%M:%SZ")

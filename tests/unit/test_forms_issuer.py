"""Strict parameter/Basic parsing, the claim set and the issuer, the log context."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
from pathlib import Path

import jwt
import pytest

from authcore.claims import access_from_claims, access_to_claims
from authcore.context import request_scope
from authcore.jsonlog import ContextFilter, JSONFormatter
from authcore.scope import Access
from tokenserver import context
from tokenserver.errors import InvalidRequest, TokenServerError, Unauthorized
from tokenserver.forms import parse_basic, parse_params
from tokenserver.issuer import Issuer, new_token_id
from tokenserver.keys import generate_key, load_keys


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


def test_parse_params() -> None:
    params = parse_params(b"a=1&scope=x+y&scope=z&empty=&pw=p%40ss%3Aw%C3%B6rd")
    assert params.all("scope") == ["x y", "z"]
    assert params.one("a") == "1"
    assert params.one("missing") is None
    assert params.one("empty") == ""
    assert params.secret("pw").reveal() == "p@ss:wörd"  # type: ignore[union-attr]
    with pytest.raises(InvalidRequest, match="repeated"):
        params.one("scope")
    with pytest.raises(InvalidRequest, match="required"):
        params.required("empty")


@pytest.mark.parametrize("raw", [b"a=%ff", b"a=%C3%28", "a=é".encode(), b"a=%00", b"a\x00=1"])
def test_parse_params_refuses_bad_bytes(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        parse_params(raw)


def test_parse_basic() -> None:
    user, pw = parse_basic(_basic("alice:pa:ss wörd".encode()))
    assert user == "alice" and pw.reveal() == "pa:ss wörd"
    user, pw = parse_basic("basic  " + base64.b64encode(b"bob:").decode() + " ")
    assert user == "bob" and pw.reveal() == ""


@pytest.mark.parametrize(
    "header",
    [
        "Bearer abc",
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b":pw").decode(),
        _basic(b"\xff\xfe:pw"),
        _basic(b"al\x00ice:pw"),
        "Basic",
        "Basic é",
    ],
)
def test_parse_basic_refuses(header: str) -> None:
    with pytest.raises(InvalidRequest, match="Basic"):
        parse_basic(header)


def test_error_bodies() -> None:
    err = InvalidRequest("bad thing")
    assert (err.status, err.body()["error"], err.body()["error_description"]) == (
        400,
        "invalid_request",
        "bad thing",
    )
    unauthorized = Unauthorized("no", realm="r")
    assert unauthorized.status == 401
    assert unauthorized.headers() == {"WWW-Authenticate": 'Basic realm="r"'}
    assert issubclass(Unauthorized, TokenServerError)


def test_claims_round_trip() -> None:
    accesses = [Access("repository", "a/b", frozenset({"push", "pull"}))]
    claims = access_to_claims(accesses)
    assert claims == [{"type": "repository", "name": "a/b", "actions": ["pull", "push"]}]
    assert access_from_claims(claims) == accesses
    assert access_from_claims(None) == []
    for bad in ({}, [1], [{"type": 1, "name": "x", "actions": []}], [{"type": "r", "name": "x"}]):
        with pytest.raises(ValueError):
            access_from_claims(bad)


def test_issuer_signs_integer_times_and_string_audience(tmp_path: Path) -> None:
    generate_key(tmp_path, "RS256")
    keys = load_keys(tmp_path, "RS256")
    issuer = Issuer(keys, "iss-name", 120, x5c=True)
    now = dt.datetime(2031, 5, 6, 7, 8, 9, 654321, tzinfo=dt.UTC)
    issued = issuer.issue(
        "alice", "registry", [Access("repository", "a/b", frozenset({"pull"}))], now
    )
    header = jwt.get_unverified_header(issued.token)
    assert header["alg"] == "RS256" and header["typ"] == "JWT"
    assert header["kid"] == keys.signing.kid
    assert header["x5c"] == [keys.signing.public.x5c]
    payload = jwt.decode(
        issued.token,
        keys.signing.public.key,
        algorithms=["RS256"],
        audience="registry",
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    iat = int(dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.UTC).timestamp())
    assert payload["iat"] == payload["nbf"] == iat
    assert payload["exp"] == iat + 120
    assert payload["aud"] == "registry"
    assert issued.issued_at_rfc3339 == "2031-05-06T07:08:09Z"
    assert issued.expires_in == 120


def test_context_filter_and_json_formatter() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "hello", None, None)
    record.extra_field = 3
    with request_scope("rid-1"):
        context.ACCOUNT.set("alice")
        context.GRANTED.set((Access("repository", "alice/a", frozenset({"pull"})),))
        assert ContextFilter(context.KEYS).filter(record)
    assert context.ACCOUNT.get() is None  # restored after the request
    assert record.context == {  # type: ignore[attr-defined]
        "request_id": "rid-1",
        "account": "alice",
        "granted": ["repository:alice/a:pull"],
    }
    entry = json.loads(JSONFormatter().format(record))
    assert entry["account"] == "alice" and entry["extra_field"] == 3 and entry["msg"] == "hello"


def test_token_ids_are_unique_and_128_bits(tmp_path: Path) -> None:
    drawn = [new_token_id() for _ in range(775)]
    assert len(set(drawn)) == len(drawn)
    for value in drawn[:50]:
        raw = base64.urlsafe_b64decode(value + "==")
        assert len(raw) == 16 and "=" not in value


def test_a_forked_child_draws_its_own_token_ids() -> None:
    new_token_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            os.write(write, " ".join(new_token_id() for _ in range(20)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {new_token_id() for _ in range(20)}
    assert len(child) == 20 and not child & parent


def test_each_second_has_its_own_issued_at(tmp_path: Path) -> None:
    generate_key(tmp_path)
    issuer = Issuer(load_keys(tmp_path), "iss-name", 60)
    at = dt.datetime(2031, 5, 6, 7, 8, 9, 100, tzinfo=dt.UTC)
    stamps = [
        issuer.issue("alice", "registry", [], at + dt.timedelta(seconds=s)).issued_at_rfc3339
        for s in (0, 0.5, 1, 61, 0)
    ]
    assert stamps == [
        "2031-05-06T07:08:09Z",
        "2031-05-06T07:08:09Z",
        "2031-05-06T07:08:10Z",
        "2031-05-06T07:09:10Z",
        "2031-05-06T07:08:09Z",
    ]
    tokens = [issuer.issue("alice", "registry", [], at) for _ in range(3)]
    assert (
        len({jwt.decode(t.token, options={"verify_signature": False})["jti"] for t in tokens}) == 3
    )

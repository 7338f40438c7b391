"""The suite's own client: challenge parsing, token caching, body replay, async use."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.registry_client import (
    TokenAuth,
    TokenError,
    parse_challenge,
    parse_challenges,
    parse_scopes,
    random_bytes,
    sha256_digest,
)

if TYPE_CHECKING:
    from tests.conformance.conftest import Target

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="http://a/token",service="registry",'
            'scope="repository:a/b:pull,push repository:c:pull",error="insufficient_scope"',
            (
                "Bearer",
                {
                    "realm": "http://a/token",
                    "service": "registry",
                    "scope": "repository:a/b:pull,push repository:c:pull",
                    "error": "insufficient_scope",
                },
            ),
        ),
        (
            'bearer  Realm = "x" ,, scope="a,b" ,service=unquoted',
            ("bearer", {"realm": "x", "scope": "a,b", "service": "unquoted"}),
        ),
        ('Bearer realm="quote \\" and, comma"', ("Bearer", {"realm": 'quote " and, comma'})),
        ("Bearer", ("Bearer", {})),
    ],
)
def test_parse_challenge(header: str, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_challenge(header) == expected


def test_parse_several_challenges() -> None:
    assert parse_challenges('Basic abc==, Bearer realm="r",scope="x:y:pull", Basic realm="b"') == [
        ("Basic", {"": "abc=="}),
        ("Bearer", {"realm": "r", "scope": "x:y:pull"}),
        ("Basic", {"realm": "b"}),
    ]


def test_parse_challenge_rejects_an_unterminated_quote() -> None:
    with pytest.raises(ValueError, match="unterminated"):
        parse_challenge('Bearer realm="open')


def test_parse_scopes() -> None:
    assert parse_scopes(
        "repository:localhost:5000/a/b:pull,push repository(plugin):c:pull registry:catalog:*"
        " repository:c:delete"
    ) == {
        ("repository", "localhost:5000/a/b"): {"pull", "push"},
        ("repository", "c"): {"pull", "delete"},
        ("registry", "catalog"): {"*"},
    }


def test_tokens_are_cached_per_scope(target: Target, repo: str) -> None:
    auth = TokenAuth("alice", target.passwords["alice"])
    with httpx.Client(base_url=target.url, auth=auth, trust_env=False) as client:
        for _ in range(3):
            assert client.get(f"/v2/{repo}/tags/list").status_code == 404
        assert auth.token_requests == 1
        client.get(f"/v2/{repo}-other/tags/list")
        assert auth.token_requests == 2
        client.get("/v2/")
        assert auth.token_requests == 3


def test_request_bodies_are_replayed_after_the_challenge(target: Target, repo: str) -> None:
    auth = TokenAuth("alice", target.passwords["alice"])
    data = random_bytes(10_000)
    with httpx.Client(base_url=target.url, auth=auth, trust_env=False) as client:
        location = client.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
        # A streamed body: TokenAuth reads it so it can be sent again after the 401.
        response = client.patch(location, content=iter([data[:4000], data[4000:]]))
        assert response.status_code == 202, response.text
        url = httpx.URL(response.headers["location"])
        done = client.put(url.copy_merge_params({"digest": sha256_digest(data)}))
        assert done.status_code == 201
        assert client.get(f"/v2/{repo}/blobs/{sha256_digest(data)}").content == data


def test_wrong_password_raises_token_error(target: Target) -> None:
    with (
        httpx.Client(
            base_url=target.url, auth=TokenAuth("alice", "wrong password"), trust_env=False
        ) as client,
        pytest.raises(TokenError) as caught,
    ):
        client.get("/v2/")
    assert caught.value.response.status_code == 401


def test_async_client(target: Target, repo: str) -> None:
    async def run() -> tuple[int, int]:
        auth = TokenAuth("alice", target.passwords["alice"])
        async with httpx.AsyncClient(base_url=target.url, auth=auth, trust_env=False) as client:
            started = await client.post(f"/v2/{repo}/blobs/uploads/")
            tags = await client.get(f"/v2/{repo}/tags/list")
            return started.status_code, tags.status_code

    assert asyncio.run(run()) == (202, 404)

"""The upstream client against upstreams that misbehave: fakes on 127.0.0.1 and 127.0.0.2.

Credentials go to the upstream's origin and its token realm only, never
where it redirects; every answer is bounded in size and time; every failure
is one of the client's typed errors, and no error message, repr or log
record carries a password, a token or a signed URL.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email.utils
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from registry_proxy.upstreams.client import (
    MAX_MANIFEST_BYTES,
    UpstreamClient,
    UpstreamDenied,
    UpstreamError,
    UpstreamInvalid,
    UpstreamNotFound,
    UpstreamUnavailable,
)
from tests.conftest import LeakGuard
from tests.support.fake_upstream import Answer, FakeUpstream, Seen
from tests.support.peers import free_port

pytestmark = pytest.mark.anyio

E = TypeVar("E", bound=UpstreamError)

NAME = "library/app"
USER, PASSWORD = "puller", "upstream-pw-7f3a"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
TOKEN = "upstream-token-5c1e9"
SIGNATURE = "signature-93bd"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST = b'{"schemaVersion":2,"mediaType":"' + OCI_MANIFEST.encode() + b'","layers":[]}'
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
BLOB = bytes(range(256)) * 4096
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def guard(leak_guard: LeakGuard) -> LeakGuard:
    for secret in (PASSWORD, TOKEN, BASIC.split()[1]):
        leak_guard.add(secret)
    return leak_guard


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def realm() -> Iterator[FakeUpstream]:
    """The upstream's token realm, on a port of its own."""
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def elsewhere() -> Iterator[FakeUpstream]:
    """Another host, where an upstream may redirect (a store's signed URL)."""
    with FakeUpstream("127.0.0.2") as fake:
        yield fake


@pytest.fixture
async def client(upstream: FakeUpstream) -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient(upstream.origin, username=USER, password=PASSWORD, timeout=5)
    yield client
    await client.aclose()


def manifest(seen: Seen) -> Answer:
    headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": MANIFEST_DIGEST}
    return Answer(200, headers, MANIFEST)


def blob(seen: Seen) -> Answer:
    return Answer(200, {"Content-Type": "application/octet-stream"}, BLOB)


def basic_protected(inner: Callable[[Seen], Answer]) -> Callable[[Seen], Answer]:
    def answer(seen: Seen) -> Answer:
        if seen.headers.get("authorization") != BASIC:
            return Answer(401, {"WWW-Authenticate": 'Basic realm="upstream"'})
        return inner(seen)

    return answer


def bearer_protected(
    realm: FakeUpstream, inner: Callable[[Seen], Answer], tokens: tuple[str, ...] = (TOKEN,)
) -> Callable[[Seen], Answer]:
    challenge = f'Bearer realm="{realm.origin}/token",service="upstream.test"'

    def answer(seen: Seen) -> Answer:
        if seen.headers.get("authorization") not in {f"Bearer {t}" for t in tokens}:
            return Answer(401, {"WWW-Authenticate": challenge})
        return inner(seen)

    return answer


def token_answer(document: Any, *, delay: float = 0.0) -> Callable[[Seen], Answer]:
    def answer(seen: Seen) -> Answer:
        time.sleep(delay)  # in the fake's own thread: concurrent requests overlap
        if seen.headers.get("authorization") != BASIC:
            return Answer(401, {"WWW-Authenticate": 'Basic realm="tokens"'})
        return Answer(200, {"Content-Type": "application/json"}, json.dumps(document).encode())

    return answer


def redirect(location: str) -> Callable[[Seen], Answer]:
    return lambda seen: Answer(307, {"Location": location})


async def read_blob(client: UpstreamClient) -> bytes:
    async with client.open_blob(NAME, BLOB_DIGEST) as opened:
        assert opened.size == len(BLOB)
        return b"".join([chunk async for chunk in opened.chunks()])


async def fails(call: Awaitable[object], error: type[E], guard: LeakGuard) -> E:
    with pytest.raises(error) as caught:
        await call
    text = f"{caught.value} {caught.value!r}"
    assert guard.found_in(text) == [] and SIGNATURE not in text, text
    return caught.value


def trickle(total: int, *, interval: float = 0.1, limit: float = 20.0) -> Iterator[bytes]:
    ends = time.monotonic() + limit
    for _ in range(total):
        if time.monotonic() > ends:
            return
        yield b" "
        time.sleep(interval)


# -- credentials and where they go --------------------------------------------------


async def test_basic_goes_to_the_upstream_and_not_where_it_redirects(
    upstream: FakeUpstream, elsewhere: FakeUpstream, client: UpstreamClient, guard: LeakGuard
) -> None:
    upstream.answer = basic_protected(redirect(f"{elsewhere.origin}/cdn/blob?sig={SIGNATURE}"))
    elsewhere.answer = blob

    assert await read_blob(client) == BLOB
    assert await read_blob(client) == BLOB  # Basic asked for once is sent up front after

    assert [s.headers.get("authorization") for s in upstream.seen] == [None, BASIC, BASIC]
    assert elsewhere.paths() == [f"/cdn/blob?sig={SIGNATURE}"] * 2
    assert all("authorization" not in s.headers for s in elsewhere.seen)


async def test_a_redirect_within_the_upstream_keeps_the_authorization(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    storage = f"{upstream.origin}/storage/blob"
    upstream.answer = basic_protected(
        lambda seen: blob(seen) if seen.path == "/storage/blob" else redirect(storage)(seen)
    )

    assert await read_blob(client) == BLOB
    assert upstream.paths()[-1] == "/storage/blob"
    assert upstream.seen[-1].headers["authorization"] == BASIC


async def test_the_realm_gets_the_credentials_the_redirect_target_does_not(
    upstream: FakeUpstream,
    realm: FakeUpstream,
    elsewhere: FakeUpstream,
    client: UpstreamClient,
    guard: LeakGuard,
) -> None:
    upstream.answer = bearer_protected(
        realm,
        lambda seen: (
            manifest(seen)
            if "/manifests/" in seen.path
            else redirect(f"{elsewhere.origin}/cdn?sig={SIGNATURE}")(seen)
        ),
    )
    realm.answer = token_answer({"token": TOKEN, "expires_in": 300}, delay=0.3)
    elsewhere.answer = blob

    # Eight at once, none holding a token yet: one fetch of it.
    fetched = await asyncio.gather(
        *(client.get_manifest(NAME, "v1", [OCI_MANIFEST]) for _ in range(8))
    )
    assert {f.body for f in fetched} == {MANIFEST}
    head = await client.head_manifest(NAME, MANIFEST_DIGEST, [OCI_MANIFEST])
    assert await read_blob(client) == BLOB

    assert len(realm.seen) == 1
    assert realm.seen[0].headers["authorization"] == BASIC
    assert realm.seen[0].path == (
        "/token?scope=repository%3Alibrary%2Fapp%3Apull&service=upstream.test"
    )
    assert head.digest == MANIFEST_DIGEST and head.size == len(MANIFEST)
    sent = [s.headers.get("authorization") for s in upstream.seen]
    assert sorted(sent, key=str) == [f"Bearer {TOKEN}"] * 10 + [None] * 8
    assert "authorization" not in elsewhere.seen[0].headers


async def test_a_blob_cut_short_is_unavailable(
    upstream: FakeUpstream, client: UpstreamClient, guard: LeakGuard
) -> None:
    upstream.answer = lambda seen: Answer(
        200, {"Content-Length": str(len(BLOB))}, iter([BLOB[:1000]])
    )
    await fails(read_blob(client), UpstreamUnavailable, guard)


async def test_the_clients_repr_names_its_upstream_alone(
    upstream: FakeUpstream, client: UpstreamClient, guard: LeakGuard
) -> None:
    assert repr(client) == f"UpstreamClient({upstream.origin!r})"


async def test_a_challenge_from_a_redirect_target_is_not_answered(
    upstream: FakeUpstream, elsewhere: FakeUpstream, client: UpstreamClient, guard: LeakGuard
) -> None:
    upstream.answer = redirect(f"{elsewhere.origin}/cdn")
    elsewhere.answer = lambda seen: Answer(
        401, {"WWW-Authenticate": f'Bearer realm="{elsewhere.origin}/token"'}
    )

    await fails(read_blob(client), UpstreamDenied, guard)
    assert elsewhere.paths() == ["/cdn"]
    assert "authorization" not in elsewhere.seen[0].headers


async def test_wrong_credentials_are_tried_once(upstream: FakeUpstream, guard: LeakGuard) -> None:
    upstream.answer = basic_protected(manifest)
    client = UpstreamClient(upstream.origin, username=USER, password="wrong-pw", timeout=5)
    guard.add("wrong-pw")
    await fails(client.get_manifest(NAME, "v1", []), UpstreamDenied, guard)
    await client.aclose()
    assert len(upstream.seen) == 2


async def test_without_credentials_a_basic_challenge_is_denied(
    upstream: FakeUpstream, guard: LeakGuard
) -> None:
    upstream.answer = basic_protected(manifest)
    client = UpstreamClient(upstream.origin, timeout=5)
    await fails(client.get_manifest(NAME, "v1", []), UpstreamDenied, guard)
    await client.aclose()
    assert len(upstream.seen) == 1


async def test_a_refused_token_is_fetched_again_once(
    upstream: FakeUpstream, realm: FakeUpstream, client: UpstreamClient, guard: LeakGuard
) -> None:
    realm.answer = token_answer({"token": TOKEN})
    upstream.answer = bearer_protected(realm, manifest)
    await client.get_manifest(NAME, "v1", [])

    upstream.answer = bearer_protected(realm, manifest, tokens=("another-token",))
    realm.answer = token_answer({"access_token": "another-token"})
    assert (await client.get_manifest(NAME, "v1", [])).body == MANIFEST
    assert len(realm.seen) == 2

    upstream.answer = bearer_protected(realm, manifest, tokens=())  # refuses every token
    await fails(client.get_manifest(NAME, "v1", []), UpstreamDenied, guard)
    assert len(realm.seen) == 3


@pytest.mark.parametrize(
    ("expires_in", "good_until"),
    [(100, 90.0), (None, 50.0), (10**9, 3590.0), (8, 6.0), ("300", 50.0), (-5, 50.0)],
    ids=["given", "default-60", "at-most-an-hour", "short", "not-a-number", "negative"],
)
async def test_a_token_is_kept_until_it_expires_less_a_margin(
    upstream: FakeUpstream, realm: FakeUpstream, expires_in: object, good_until: float
) -> None:
    now = [1000.0]
    client = UpstreamClient(
        upstream.origin, username=USER, password=PASSWORD, timeout=5, clock=lambda: now[0]
    )
    document = {"token": TOKEN} | ({} if expires_in is None else {"expires_in": expires_in})
    realm.answer = token_answer(document)
    upstream.answer = bearer_protected(realm, manifest)

    await client.get_manifest(NAME, "v1", [])
    now[0] = 1000.0 + good_until - 0.5
    await client.get_manifest(NAME, "v1", [])
    assert len(realm.seen) == 1
    now[0] = 1000.0 + good_until
    await client.get_manifest(NAME, "v1", [])
    assert len(realm.seen) == 2
    await client.aclose()


# -- hostile challenges and token answers ---------------------------------------------


@pytest.mark.parametrize(
    ("challenge", "error"),
    [
        ('Bearer realm="http://127.0.0.1:1/token', UpstreamInvalid),
        ('Bearer realm="http://127.0.0.1:1/token", scope="' + "a" * 9000 + '"', UpstreamInvalid),
        ("Bearer " + ", ".join(f"p{i}=v" for i in range(21)), UpstreamInvalid),
        ('Bearer realm="file:///etc/passwd"', UpstreamInvalid),
        ('Bearer realm="javascript:alert(1)"', UpstreamInvalid),
        ('Bearer realm="http://user:pw@127.0.0.1:1/token"', UpstreamInvalid),
        ('Bearer service="upstream.test"', UpstreamInvalid),
        ("\x01 \xfe", UpstreamInvalid),
        ("Negotiate abc==", UpstreamDenied),
        (None, UpstreamDenied),
    ],
    ids=[
        "unterminated",
        "over-8-KiB",
        "21-params",
        "file-realm",
        "javascript-realm",
        "userinfo-realm",
        "no-realm",
        "junk",
        "unknown-scheme",
        "none",
    ],
)
async def test_a_bad_challenge_is_an_error_and_sends_nothing_anywhere(
    upstream: FakeUpstream,
    client: UpstreamClient,
    guard: LeakGuard,
    challenge: str | None,
    error: type[UpstreamError],
) -> None:
    headers = {} if challenge is None else {"WWW-Authenticate": challenge}
    upstream.answer = lambda seen: Answer(401, headers)
    await fails(client.get_manifest(NAME, "v1", []), error, guard)
    assert len(upstream.seen) == 1


def _huge_chunked(seen: Seen) -> Answer:
    return Answer(200, {"Content-Type": "application/json"}, (b" " * 65536 for _ in range(64)))


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (Answer(200, {}, b"<html>not json</html>"), UpstreamInvalid),
        (Answer(200, {}, b'["' + TOKEN.encode() + b'"]'), UpstreamInvalid),
        (Answer(200, {}, b'{"expires_in": 60}'), UpstreamInvalid),
        (Answer(200, {}, b'{"token": 5}'), UpstreamInvalid),
        (Answer(200, {}, b'{"token": "two words"}'), UpstreamInvalid),
        (Answer(200, {}, b'{"token": "' + b"t" * 70000 + b'"}'), UpstreamInvalid),
        (Answer(200, {"Content-Length": "100000"}, iter([b"{}"])), UpstreamInvalid),
        (Answer(302, {"Location": "http://127.0.0.2:1/token"}), UpstreamInvalid),
        (Answer(401), UpstreamDenied),
        (Answer(403), UpstreamDenied),
        (Answer(503), UpstreamUnavailable),
    ],
    ids=[
        "not-json",
        "a-list",
        "no-token",
        "token-not-text",
        "token-not-a-header-value",
        "over-64-KiB",
        "content-length-over-64-KiB",
        "redirect",
        "401",
        "403",
        "503",
    ],
)
async def test_a_bad_token_answer_is_an_error(
    upstream: FakeUpstream,
    realm: FakeUpstream,
    client: UpstreamClient,
    guard: LeakGuard,
    answer: Answer,
    error: type[UpstreamError],
) -> None:
    upstream.answer = bearer_protected(realm, manifest)
    realm.answer = lambda seen: answer
    await fails(client.get_manifest(NAME, "v1", []), error, guard)
    assert len(upstream.seen) == 1


async def test_an_endless_token_answer_is_cut(
    upstream: FakeUpstream, realm: FakeUpstream, client: UpstreamClient, guard: LeakGuard
) -> None:
    upstream.answer = bearer_protected(realm, manifest)
    realm.answer = _huge_chunked
    await fails(client.get_manifest(NAME, "v1", []), UpstreamInvalid, guard)


# -- bounds -----------------------------------------------------------------------------


async def test_a_10_gb_manifest_is_refused_before_a_byte_is_read(
    upstream: FakeUpstream, client: UpstreamClient, guard: LeakGuard
) -> None:
    def stalled() -> Iterator[bytes]:
        time.sleep(10)  # were it read, the deadline (5 s) would end it first
        yield b"{}"

    upstream.answer = lambda seen: Answer(200, {"Content-Length": str(10 * 10**9)}, stalled())
    began = time.monotonic()
    caught = await fails(client.get_manifest(NAME, "v1", []), UpstreamInvalid, guard)
    assert time.monotonic() - began < 4
    assert "Content-Length 10000000000" in str(caught)


async def test_an_endless_chunked_manifest_is_cut_at_the_cap(
    upstream: FakeUpstream, client: UpstreamClient, guard: LeakGuard
) -> None:
    upstream.answer = lambda seen: Answer(200, {}, (b"x" * 65536 for _ in range(1024)))
    await fails(client.get_manifest(NAME, "v1", []), UpstreamInvalid, guard)
    # What the sockets' buffers held beyond the cap, not the 64 MiB offered.
    assert upstream.sent_bytes < MAX_MANIFEST_BYTES + 16 * 2**20


async def test_a_manifest_of_the_cap_is_read(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    upstream.answer = lambda seen: Answer(200, {}, (b"x" * 2**20 for _ in range(4)))
    assert len((await client.get_manifest(NAME, "v1", [])).body) == MAX_MANIFEST_BYTES


async def test_an_encoded_manifest_is_refused(
    upstream: FakeUpstream, client: UpstreamClient, guard: LeakGuard
) -> None:
    upstream.answer = lambda seen: Answer(200, {"Content-Encoding": "gzip"}, b"\x1f\x8b")
    await fails(client.get_manifest(NAME, "v1", []), UpstreamInvalid, guard)


@pytest.mark.parametrize("where", ["manifest", "token"])
async def test_a_trickle_is_cut_at_the_deadline(
    upstream: FakeUpstream, realm: FakeUpstream, guard: LeakGuard, where: str
) -> None:
    def trickled(seen: Seen) -> Answer:
        return Answer(200, {"Content-Length": "1000"}, trickle(1000))

    upstream.answer = bearer_protected(realm, trickled) if where == "token" else trickled
    realm.answer = trickled
    client = UpstreamClient(upstream.origin, username=USER, password=PASSWORD, timeout=2)
    began = time.monotonic()
    await fails(client.get_manifest(NAME, "v1", []), UpstreamUnavailable, guard)
    assert 1.8 < time.monotonic() - began < 5  # 2 s, and a busy machine's slack
    await client.aclose()


async def test_a_stalled_blob_is_cut_by_the_read_timeout(
    upstream: FakeUpstream, guard: LeakGuard
) -> None:
    def stalling() -> Iterator[bytes]:
        yield BLOB[:1000]
        time.sleep(6)
        yield BLOB[1000:]

    upstream.answer = lambda seen: Answer(200, {"Content-Length": str(len(BLOB))}, stalling())
    client = UpstreamClient(upstream.origin, timeout=2)
    got = bytearray()
    began = time.monotonic()
    with pytest.raises(UpstreamUnavailable):
        async with client.open_blob(NAME, BLOB_DIGEST) as opened:
            assert opened.size == len(BLOB)
            async for chunk in opened.chunks():
                got += chunk
    assert bytes(got) == BLOB[:1000]
    assert 1.8 < time.monotonic() - began < 5  # 2 s, and a busy machine's slack
    await client.aclose()


async def test_a_slow_blob_that_keeps_coming_is_not_cut(
    upstream: FakeUpstream,
) -> None:
    def slow() -> Iterator[bytes]:
        for i in range(0, len(BLOB), len(BLOB) // 4):
            time.sleep(0.5)
            yield BLOB[i : i + len(BLOB) // 4]

    upstream.answer = lambda seen: Answer(200, {"Content-Length": str(len(BLOB))}, slow())
    client = UpstreamClient(upstream.origin, timeout=1.5)
    assert await read_blob(client) == BLOB  # 2 s in all, no read waiting 1.5 s
    await client.aclose()


# -- statuses -------------------------------------------------------------------------


async def test_429_and_503_say_when_to_retry(
    upstream: FakeUpstream, client: UpstreamClient, guard: LeakGuard
) -> None:
    upstream.answer = lambda seen: Answer(429, {"Retry-After": "7"})
    assert (
        await fails(client.get_manifest(NAME, "v1", []), UpstreamUnavailable, guard)
    ).retry_after == 7.0

    later = email.utils.format_datetime(
        dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30), usegmt=True
    )
    upstream.answer = lambda seen: Answer(503, {"Retry-After": later})
    waited = (
        await fails(client.head_manifest(NAME, "v1", []), UpstreamUnavailable, guard)
    ).retry_after
    assert waited is not None and 25 <= waited <= 30

    upstream.answer = lambda seen: Answer(500, {"Retry-After": "soon"})
    assert (
        await fails(client.get_manifest(NAME, "v1", []), UpstreamUnavailable, guard)
    ).retry_after is None
    upstream.answer = lambda seen: Answer(429, {"Retry-After": "9" * 40})
    assert (
        await fails(client.get_manifest(NAME, "v1", []), UpstreamUnavailable, guard)
    ).retry_after == 3600.0


async def test_404_is_not_found_and_others_are_invalid(
    upstream: FakeUpstream, client: UpstreamClient, guard: LeakGuard
) -> None:
    await fails(client.get_manifest(NAME, "v1", []), UpstreamNotFound, guard)
    upstream.answer = lambda seen: Answer(400, {}, b"{}")
    await fails(client.get_manifest(NAME, "v1", []), UpstreamInvalid, guard)


async def test_a_refused_connection_is_unavailable(guard: LeakGuard) -> None:
    client = UpstreamClient(f"http://127.0.0.1:{free_port()}", username=USER, password=PASSWORD)
    began = time.monotonic()
    await fails(client.get_manifest(NAME, "v1", []), UpstreamUnavailable, guard)
    await fails(read_blob(client), UpstreamUnavailable, guard)
    assert time.monotonic() - began < 2
    await client.aclose()


@pytest.mark.parametrize(
    "location",
    ["/again", "file:///etc/passwd", "javascript:alert(1)", "http://u:p@127.0.0.2:1/x", ""],
    ids=["a-loop", "file", "javascript", "userinfo", "empty"],
)
async def test_a_bad_redirect_is_invalid(
    upstream: FakeUpstream, client: UpstreamClient, guard: LeakGuard, location: str
) -> None:
    upstream.answer = redirect(location)
    await fails(client.get_manifest(NAME, "v1", []), UpstreamInvalid, guard)
    assert len(upstream.seen) == (6 if location == "/again" else 1)


async def test_an_https_upstream_is_trusted_by_its_ca_file_alone(
    tmp_path: Path, guard: LeakGuard
) -> None:
    with FakeUpstream(tls=tmp_path / "tls") as upstream:
        upstream.answer = basic_protected(manifest)
        trusting = UpstreamClient(
            upstream.origin, username=USER, password=PASSWORD, ca_file=upstream.ca_file
        )
        assert (await trusting.get_manifest(NAME, "v1", [])).body == MANIFEST
        await trusting.aclose()

        # The system's CAs (not this one): no connection, so no credential sent.
        untrusting = UpstreamClient(upstream.origin, username=USER, password=PASSWORD)
        await fails(untrusting.get_manifest(NAME, "v1", []), UpstreamUnavailable, guard)
        await untrusting.aclose()
        assert len(upstream.seen) == 2


# -- what is sent ---------------------------------------------------------------------


async def test_the_request_asks_for_what_the_caller_accepts_unencoded(
    upstream: FakeUpstream, client: UpstreamClient
) -> None:
    upstream.answer = lambda seen: Answer(
        200, {"Set-Cookie": "session=1", **manifest(seen).headers}, MANIFEST
    )
    accept = [OCI_MANIFEST, "application/vnd.oci.image.index.v1+json", "bad\r\nX-Injected: 1"]
    fetched = await client.get_manifest(NAME, "v1", accept)
    await client.head_manifest(NAME, MANIFEST_DIGEST, accept)

    assert fetched.body == MANIFEST
    assert fetched.media_type == OCI_MANIFEST and fetched.digest == MANIFEST_DIGEST
    assert upstream.paths() == [
        f"/v2/{NAME}/manifests/v1",
        f"/v2/{NAME}/manifests/{MANIFEST_DIGEST}",
    ]
    for seen in upstream.seen:
        assert seen.headers["accept"] == ", ".join(accept[:2])
        assert seen.headers["accept-encoding"] == "identity"
        assert "cookie" not in seen.headers and "x-injected" not in seen.headers


@pytest.mark.parametrize(
    ("name", "reference"),
    [("../etc", "v1"), ("Library/app", "v1"), (NAME, "../../x"), (NAME, "sha256:abc")],
)
async def test_a_bad_name_or_reference_sends_nothing(
    upstream: FakeUpstream, client: UpstreamClient, name: str, reference: str
) -> None:
    with pytest.raises(ValueError):
        await client.get_manifest(name, reference, [])
    assert upstream.seen == []


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/", "http://u:p@127.0.0.1", "http://127.0.0.1/?q=1", "http://[::1", "/v2"],
)
def test_an_upstream_url_is_http_without_user_or_query(url: str) -> None:
    with pytest.raises(ValueError):
        UpstreamClient(url)

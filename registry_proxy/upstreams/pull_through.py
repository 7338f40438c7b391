"""An upstream's manifests and blobs, served through this registry and kept in its storage.

Content named by digest never changes: it is fetched once, checked against
its digest, stored, and served from storage ever after. A tag is believed
for the upstream's `ttl` after it was last checked; then a HEAD asks the
upstream what it points at now (registries do not count HEADs against pull
limits), and only a new digest is fetched. When the upstream cannot answer
(down, refusing, 429), a tag cached before is served as it was, marked with
a `Warning` header; anything never cached is the upstream's error.

A missing blob is fetched once per instance however many ask for it at once:
the first request's fetch streams into storage through the same digest-
checked upload as a push (`Uploads.put`, so nothing partial is ever visible,
to this instance or another on the same bucket) and hands each piece to that
request as it arrives; the others wait for it and are served from storage.
The fetch runs to its end if the first client goes away, so the others still
get it. A gateway (`cache: false`) stores nothing: manifests are fetched each
time and checked, blobs streamed through with their digest checked as they
pass (a mismatch cuts the answer short).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from registry_proxy.reference import Digest, InvalidDigest, is_digest
from registry_proxy.storage import Storage
from registry_proxy.storage.cache_uses import LAYER, MANIFEST, CacheUses
from registry_proxy.storage.errors import BlobUnknown, ManifestUnknown
from registry_proxy.storage.manifests import served_media_type
from registry_proxy.storage.schema import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
)
from registry_proxy.upstreams.client import (
    UpstreamBlob,
    UpstreamError,
    UpstreamInvalid,
    UpstreamNotFound,
)
from registry_proxy.upstreams.routing import Routed

__all__ = ["MANIFEST_TYPES", "STALE", "BlobStream", "PullThrough", "ServedManifest"]

# What this registry asks an upstream for: every manifest type it stores, so the
# upstream answers the manifest itself rather than converting it for a client.
MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)
# RFC 9111's warn-code for a stale answer (the registry's clients log it).
STALE = '110 - "Response is Stale"'
# Pieces of a blob held for its first client while storage takes them faster.
QUEUED_PIECES = 8
# A first client that takes no piece for this long is left behind (its answer cut short):
# the fetch, which others may be waiting for, goes on without it.
SLOW_CLIENT = 60.0


@dataclass(frozen=True)
class ServedManifest:
    body: bytes
    media_type: str
    digest: Digest
    # Served from the cache while the upstream could not say what the tag is now.
    stale: bool = False


@dataclass(frozen=True)
class BlobStream:
    """A blob coming from the upstream as it arrives: its size if the upstream said."""

    size: int | None
    chunks: AsyncIterator[bytes]


@dataclass(eq=False)
class _Fetch:
    """One blob on its way from the upstream into storage."""

    done: asyncio.Event = field(default_factory=asyncio.Event)
    # Its first client's pieces; None once that client is gone (or there is none).
    listener: asyncio.Queue[bytes | None] | None = None
    # The upstream's Content-Length, once it answered (None if it failed first).
    size: asyncio.Future[int | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    failed: BaseException | None = None
    # The first client was left behind: what it got is not the whole blob.
    dropped: bool = False

    async def hand_on(self, piece: bytes | None) -> None:
        """Give the first client a piece (None: the end), unless it is gone or too slow."""
        queue = self.listener
        if queue is None:
            return
        if not queue.full():  # the usual case: no timer, no task
            queue.put_nowait(piece)
            return
        try:
            await asyncio.wait_for(queue.put(piece), SLOW_CLIENT)
        except TimeoutError:
            self.listener = None
            self.dropped = piece is not None
            _empty(queue)
            queue.put_nowait(None)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Counts(Protocol):
    """What is counted of the upstreams' content (the app's metrics)."""

    def proxy_hit(self, kind: str) -> None: ...
    def proxy_miss(self, kind: str) -> None: ...
    def proxy_pulled(self, upstream: str, size: int) -> None: ...


class _Uncounted:
    def proxy_hit(self, kind: str) -> None:
        pass

    def proxy_miss(self, kind: str) -> None:
        pass

    def proxy_pulled(self, upstream: str, size: int) -> None:
        pass


class PullThrough:
    def __init__(
        self,
        storage: Storage,
        counts: Counts | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self._storage = storage
        self._counts: Counts = counts or _Uncounted()
        self._clock = clock
        self._uses = CacheUses(storage.driver, clock)
        self._fetches: dict[tuple[str, Digest], _Fetch] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- manifests -----------------------------------------------------------

    async def manifest(self, routed: Routed, reference: str) -> ServedManifest:
        """The manifest `reference` (a tag or digest) of the routed repository."""
        if is_digest(reference):
            digest = _digest(reference)
            if routed.upstream.cache:
                with contextlib.suppress(ManifestUnknown):
                    return await self._hit(routed, await self._stored(routed.local, reference))
            return await self._fetch_manifest(routed, digest, reference)
        return await self._tagged(routed, reference)

    async def _tagged(self, routed: Routed, tag: str) -> ServedManifest:
        upstream = routed.upstream
        cached = (
            await self._storage.tags.resolve_with_time(routed.local, tag)
            if upstream.cache
            else None
        )
        if cached is not None and self._fresh(routed, cached[1]):
            with contextlib.suppress(ManifestUnknown):
                return await self._hit(routed, await self._stored(routed.local, str(cached[0])))
            cached = None  # removed by `gc` since: the upstream says again
        try:
            head = await upstream.client.head_manifest(routed.remote, tag, MANIFEST_TYPES)
            named = _digest(head.digest) if head.digest else None
            if cached is not None and named == cached[0]:
                with contextlib.suppress(ManifestUnknown):
                    found = await self._stored(routed.local, str(cached[0]))
                    # Unchanged upstream: believed for another `ttl` from now.
                    await self._storage.tags.tag(routed.local, tag, cached[0])
                    return await self._hit(routed, found)
            served = await self._fetch_manifest(routed, named, str(named) if named else tag)
        except UpstreamNotFound:
            raise
        except UpstreamError as exc:
            if cached is None:
                raise
            try:
                found = await self._stored(routed.local, str(cached[0]))
            except ManifestUnknown:
                raise exc from None
            found = await self._hit(routed, found)
            return ServedManifest(found.body, found.media_type, found.digest, stale=True)
        if upstream.cache:
            await self._storage.tags.tag(routed.local, tag, served.digest)
        return served

    def _fresh(self, routed: Routed, checked: dt.datetime) -> bool:
        ttl = routed.upstream.ttl
        return ttl is None or self._clock() - checked < ttl

    async def _fetch_manifest(
        self, routed: Routed, expected: Digest | None, reference: str
    ) -> ServedManifest:
        fetched = await routed.upstream.client.get_manifest(
            routed.remote, reference, MANIFEST_TYPES
        )
        self._counts.proxy_miss("manifest")
        algorithm = expected.algorithm if expected else "sha256"
        digest = Digest.of(fetched.body, algorithm)
        named = _digest(fetched.digest) if fetched.digest else None
        if (expected is not None and digest != expected) or (
            named is not None and named.algorithm == algorithm and named != digest
        ):
            raise UpstreamInvalid("the manifest's bytes do not match its digest")
        if not routed.upstream.cache:
            return ServedManifest(fetched.body, fetched.media_type or OCI_MANIFEST, digest)
        await self._storage.manifests.put(
            routed.local,
            str(digest),
            fetched.body,
            fetched.media_type or None,
            references_elsewhere=True,
        )
        # As stored, but not read back: `gc` may have removed it already.
        return ServedManifest(fetched.body, served_media_type(fetched.body), digest)

    async def _hit(self, routed: Routed, served: ServedManifest) -> ServedManifest:
        self._counts.proxy_hit("manifest")
        await self._uses.used(routed.local, MANIFEST, served.digest)
        return served

    async def _stored(self, repo: str, reference: str) -> ServedManifest:
        found = await self._storage.manifests.get(repo, reference)
        return ServedManifest(found.body, found.media_type, found.digest)

    # -- blobs ---------------------------------------------------------------

    async def blob(self, routed: Routed, digest: Digest, *, stream: bool) -> BlobStream | None:
        """None when the blob is in storage, linked to the repository: serve it from there.
        Else, with `stream`, the blob as the upstream sends it (this request fetches it,
        or, for a gateway, passes it through); without, once it is stored.
        """
        storage = self._storage
        if not routed.upstream.cache:
            return await self._passed_through(routed, digest, stream=stream)
        if await storage.blobs.linked(routed.local, digest) is not None:
            self._counts.proxy_hit("blob")
            await self._uses.used(routed.local, LAYER, digest)
            return None
        key = (routed.local, digest)
        fetch = self._fetches.get(key)
        if fetch is None and await self._linked_from_elsewhere(routed, digest):
            self._counts.proxy_hit("blob")
            return None
        if fetch is None:
            self._counts.proxy_miss("blob")
            fetch = self._start(routed, digest, listen=stream)
            if stream:
                size = await fetch.size
                if fetch.failed is not None:
                    raise fetch.failed
                return BlobStream(size, self._listen(fetch))
        else:
            self._counts.proxy_hit("blob")
        await fetch.done.wait()
        if fetch.failed is not None:
            raise fetch.failed
        return None

    async def _linked_from_elsewhere(self, routed: Routed, digest: Digest) -> bool:
        """Stored already, for another repository: linked here once the upstream says this
        repository has it too (else a pull could reach what its repository does not hold)."""
        if await self._storage.blobs.stat(digest) is None:
            return False
        await routed.upstream.client.head_blob(routed.remote, str(digest))
        try:
            await self._storage.blobs.link(routed.local, digest)
        except BlobUnknown:  # swept by a gc in between: fetched after all
            return False
        return True

    def _start(self, routed: Routed, digest: Digest, *, listen: bool) -> _Fetch:
        fetch = _Fetch(listener=asyncio.Queue(QUEUED_PIECES) if listen else None)
        key = (routed.local, digest)
        self._fetches[key] = fetch
        task = asyncio.create_task(self._fetch_blob(routed, digest, fetch, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return fetch

    async def _fetch_blob(
        self, routed: Routed, digest: Digest, fetch: _Fetch, key: tuple[str, Digest]
    ) -> None:
        try:
            async with routed.upstream.client.open_blob(routed.remote, str(digest)) as blob:
                fetch.size.set_result(blob.size)
                pieces = _counted(_handed_on(blob, fetch), self._counts, routed.upstream.prefix)
                await self._storage.uploads.put(routed.local, digest, pieces)
        except BaseException as exc:  # the waiting requests must hear of anything
            fetch.failed = exc
            if not fetch.size.done():  # the first client reads `failed` then
                fetch.size.set_result(None)
            if not isinstance(exc, Exception):
                raise
        finally:
            del self._fetches[key]
            fetch.done.set()
            await fetch.hand_on(None)

    async def _listen(self, fetch: _Fetch) -> AsyncIterator[bytes]:
        queue = fetch.listener
        assert queue is not None
        try:
            while (piece := await queue.get()) is not None:
                yield piece
            if fetch.failed is not None:
                # Cut the answer short: what was sent is not that blob.
                raise fetch.failed
            if fetch.dropped:
                raise UpstreamInvalid("the client took too long: its answer is cut short")
        finally:
            # Gone (or done): the fetch goes on into storage without us.
            fetch.listener = None
            _empty(queue)

    async def _passed_through(self, routed: Routed, digest: Digest, *, stream: bool) -> BlobStream:
        opened = routed.upstream.client.open_blob(routed.remote, str(digest))
        if not stream:
            async with opened as blob:
                return BlobStream(blob.size, _nothing())
        self._counts.proxy_miss("blob")
        sized: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        pieces = _counted(_checked(opened, digest, sized), self._counts, routed.upstream.prefix)
        # Started here: the upstream has answered (or failed) before our answer begins,
        # and a started generator is closed by the event loop even if never read again.
        await anext(pieces)
        return BlobStream(sized.result(), pieces)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _handed_on(blob: UpstreamBlob, fetch: _Fetch) -> AsyncIterator[bytes]:
    """The upstream's pieces, into storage, each handed to the first client on the way."""
    async for piece in blob.chunks():
        await fetch.hand_on(piece)
        yield piece


async def _counted(
    pieces: AsyncIterator[bytes], counts: Counts, upstream: str
) -> AsyncIterator[bytes]:
    async for piece in pieces:
        counts.proxy_pulled(upstream, len(piece))
        yield piece


def _empty(queue: asyncio.Queue[bytes | None]) -> None:
    while not queue.empty():
        queue.get_nowait()


async def _checked(
    opened: AbstractAsyncContextManager[UpstreamBlob],
    digest: Digest,
    sized: asyncio.Future[int | None],
) -> AsyncIterator[bytes]:
    """The blob as it passes, its digest checked at the end (a mismatch cuts it short);
    first an empty piece, once the upstream has answered."""
    hasher = digest.hasher()
    async with opened as blob:
        sized.set_result(blob.size)
        yield b""
        async for piece in blob.chunks():
            hasher.update(piece)
            yield piece
    if hasher.hexdigest() != digest.hex:
        raise UpstreamInvalid("the blob's bytes do not match its digest")


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield


def _digest(text: str) -> Digest:
    try:
        return Digest.parse(text)
    except InvalidDigest:
        raise UpstreamInvalid("the upstream named a malformed digest") from None

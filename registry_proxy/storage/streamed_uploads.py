"""Upload data on a store that appends (filesystem, memory): one data file, hashed as it is written.

Data is appended to `_uploads/<id>/data`. The running hash lives in memory,
keyed by session, for the fast path; when it is missing or stale (restart,
another replica wrote the last chunk) it is recomputed from the stored
partial data, so the file is the only state a session needs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterable
from dataclasses import dataclass

from authcore.cache import Cache
from registry_proxy.reference import Digest
from registry_proxy.storage import paths
from registry_proxy.storage.batching import batched
from registry_proxy.storage.blobs import Blobs
from registry_proxy.storage.driver import AppendWriter, FileNotFound, StorageDriver
from registry_proxy.storage.errors import BlobUploadUnknown, DigestInvalid, RangeInvalid
from registry_proxy.storage.hashing import hash_stored
from registry_proxy.storage.links import exists

__all__ = ["StreamedUploads"]

# Batches of one upload queued for writing, at most; each holds a batch's bytes.
IN_FLIGHT = 2
RUNNING_ALGORITHM = "sha256"
MAX_HASH_STATES = 4096


@dataclass(slots=True)
class _HashState:
    hasher: hashlib._Hash
    size: int


class StreamedUploads:
    def __init__(self, driver: StorageDriver, blobs: Blobs) -> None:
        self._driver = driver
        self._blobs = blobs
        self._states: Cache[str, _HashState] = Cache(MAX_HASH_STATES)

    async def create(self, repo: str, upload_id: str) -> None:
        await self._driver.put_content(paths.upload_data(repo, upload_id), b"")
        self._remember(_key(repo, upload_id), _HashState(hashlib.new(RUNNING_ALGORITHM), 0))

    async def size(self, repo: str, upload_id: str) -> int:
        try:
            return (await self._driver.stat(paths.upload_data(repo, upload_id))).size
        except FileNotFound:
            return 0

    async def append(
        self, repo: str, upload_id: str, chunks: AsyncIterable[bytes], start: int | None
    ) -> int:
        key = _key(repo, upload_id)
        size = await self.size(repo, upload_id)
        if start is not None and start != size:
            raise RangeInvalid(size)
        state = await self._state(repo, upload_id, key, size)
        writer = await self._driver.open_append(paths.upload_data(repo, upload_id))
        # Batches are written and hashed (in a worker thread, one after the
        # other) while the next ones arrive, so the network and the disk both
        # stay busy; the body waits only while IN_FLIGHT batches are queued.
        queued: collections.deque[asyncio.Task[None]] = collections.deque()
        try:
            async with contextlib.aclosing(batched(chunks)) as batches:
                async for batch in batches:
                    while len(queued) >= IN_FLIGHT:
                        await queued[0]  # off the queue once done, so `finally` sees it
                        queued.popleft()
                    after = queued[-1] if queued else None
                    queued.append(
                        asyncio.create_task(self._write(writer, state, key, batch, after))
                    )
                    # Not held here until the next batch is complete: a client that
                    # trickles after a large chunk would keep that chunk in memory.
                    del batch
            while queued:
                await queued[0]
                queued.popleft()
        finally:
            if queued:
                # The body failed while batches were queued: they land (or fail)
                # before the file closes. Their errors are second to the one under way.
                await asyncio.wait(queued)
                for task in queued:
                    if not task.cancelled():
                        task.exception()  # retrieved: not reported as never retrieved
            await writer.close()
        if not await exists(self._driver, paths.upload_started_at(repo, upload_id)):
            # Cancelled or purged meanwhile: opening for append made the data file
            # again, outside any session. Nobody will finish it; drop it now.
            await self.discard(repo, upload_id)
            raise BlobUploadUnknown(upload_id)
        return writer.size

    async def commit(
        self, repo: str, upload_id: str, digest: Digest, chunks: AsyncIterable[bytes] | None
    ) -> int:
        if chunks is not None:
            await self.append(repo, upload_id, chunks, None)
        size = await self.size(repo, upload_id)
        actual = await self._digest(repo, upload_id, size, digest.algorithm)
        if actual != digest:
            await self.discard(repo, upload_id)
            raise DigestInvalid(f"uploaded content has digest {actual}, not {digest}")
        await self._store(repo, upload_id, digest, size)
        return size

    async def discard(self, repo: str, upload_id: str) -> None:
        self._states.pop(_key(repo, upload_id))
        with contextlib.suppress(FileNotFound):
            await self._driver.delete(paths.upload_dir(repo, upload_id))

    # -- the running hash --------------------------------------------------

    def _remember(self, key: str, state: _HashState) -> None:
        self._states.put(key, state)

    async def _state(self, repo: str, upload_id: str, key: str, size: int) -> _HashState:
        state = self._states.get(key)
        if state is None or state.size != size:
            hasher, hashed = await hash_stored(
                self._driver, paths.upload_data(repo, upload_id), RUNNING_ALGORITHM
            )
            state = _HashState(hasher, hashed)
        self._remember(key, state)
        return state

    async def _digest(self, repo: str, upload_id: str, size: int, algorithm: str) -> Digest:
        if algorithm == RUNNING_ALGORITHM:
            state = await self._state(repo, upload_id, _key(repo, upload_id), size)
            return Digest(algorithm, state.hasher.hexdigest())
        hasher, _ = await hash_stored(self._driver, paths.upload_data(repo, upload_id), algorithm)
        return Digest(algorithm, hasher.hexdigest())

    async def _write(
        self,
        writer: AppendWriter,
        state: _HashState,
        key: str,
        batch: list[bytes],
        after: asyncio.Task[None] | None,
    ) -> None:
        try:
            if after is not None:
                # In order, and nothing more once a batch failed: a gap would
                # shift every later byte.
                await after
            # One thread call per batch: each piece is written, then hashed while in cache.
            await writer.write(batch, state.hasher.update)
        except BaseException:
            # The file and the hash may now disagree: recompute from the file next time.
            self._states.pop(key)
            raise
        state.size += sum(len(piece) for piece in batch)

    # -- committing --------------------------------------------------------

    async def _store(self, repo: str, upload_id: str, digest: Digest, size: int) -> None:
        if await self._blobs.stat(digest) is not None:
            return  # Same bytes already stored; the session is dropped by the caller.
        # First to a name only this commit knows: if the session is cancelled or
        # purged meanwhile (by any process), what arrives under the digest can
        # then only be these very bytes, never a data file someone made anew.
        staging = f"{paths.upload_dir(repo, upload_id)}/commit-{uuid.uuid4()}"
        try:
            if size:
                await self._driver.move(paths.upload_data(repo, upload_id), staging)
            await self._blobs.adopt(staging, digest, size)
        except FileNotFound:
            with contextlib.suppress(FileNotFound):
                await self._driver.delete(staging)
            raise BlobUploadUnknown(upload_id) from None


def _key(repo: str, upload_id: str) -> str:
    return f"{repo}/{upload_id}"

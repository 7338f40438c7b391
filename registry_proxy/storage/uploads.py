"""Resumable blob upload sessions, kept in storage so a restart or another replica can continue.

On a store that appends (filesystem, memory) data is appended to
`_uploads/<id>/data` and hashed while it is written. The running hash lives
in memory, keyed by session, for the fast path; when it is missing or stale
(restart, another replica wrote the last chunk) it is recomputed from the
stored partial data. On a multipart store (S3) the session is handled by
`part_uploads`, which keeps the hash state in storage with the session.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import hashlib
import uuid
import weakref
from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass

from authcore.cache import Cache
from registry_proxy.reference import Digest
from registry_proxy.storage import paths
from registry_proxy.storage.blobs import Blobs
from registry_proxy.storage.driver import (
    CHUNK_SIZE,
    AppendWriter,
    FileNotFound,
    MultipartStore,
    StorageDriver,
)
from registry_proxy.storage.errors import (
    BlobUploadUnknown,
    DigestInvalid,
    RangeInvalid,
    StorageError,
)
from registry_proxy.storage.hashing import hash_stored
from registry_proxy.storage.links import exists, write_link
from registry_proxy.storage.part_uploads import PartUploads

__all__ = ["UploadStatus", "Uploads"]

# Chunks from the network are small; file I/O and hashing go to a thread in batches this big.
BATCH_SIZE = CHUNK_SIZE
# Batches of one upload queued for writing, at most; each holds BATCH_SIZE bytes.
IN_FLIGHT = 2
RUNNING_ALGORITHM = "sha256"
MAX_HASH_STATES = 4096


@dataclass(frozen=True, slots=True)
class UploadStatus:
    id: str
    offset: int
    started_at: dt.datetime


@dataclass(slots=True)
class _HashState:
    hasher: hashlib._Hash
    size: int


def _format_rfc3339(moment: dt.datetime) -> str:
    # Go's time.RFC3339 for a UTC time: whole seconds and a "Z".
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Uploads:
    def __init__(self, driver: StorageDriver, blobs: Blobs) -> None:
        self._driver = driver
        self._blobs = blobs
        self._states: Cache[str, _HashState] = Cache(MAX_HASH_STATES)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._parts = PartUploads(driver, blobs) if isinstance(driver, MultipartStore) else None

    async def start(self, repo: str) -> UploadStatus:
        upload_id = str(uuid.uuid4())
        started_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
        # The data (or session) first: a session is visible once "startedat" exists.
        if self._parts is not None:
            await self._parts.create(repo, upload_id)
        else:
            await self._driver.put_content(paths.upload_data(repo, upload_id), b"")
        await self._driver.put_content(
            paths.upload_started_at(repo, upload_id), _format_rfc3339(started_at).encode()
        )
        self._remember(self._key(repo, upload_id), _HashState(hashlib.new(RUNNING_ALGORITHM), 0))
        return UploadStatus(upload_id, 0, started_at)

    async def status(self, repo: str, upload_id: str) -> UploadStatus:
        started_at = await self._require(repo, upload_id)
        if self._parts is not None:
            return UploadStatus(upload_id, await self._parts.size(repo, upload_id), started_at)
        return UploadStatus(upload_id, await self._size(repo, upload_id), started_at)

    async def append(
        self,
        repo: str,
        upload_id: str,
        chunks: AsyncIterable[bytes],
        start: int | None = None,
    ) -> int:
        """Append a chunk; returns the new size. `RangeInvalid` if `start` is not the current end.

        If `chunks` fails midway (client gone), what arrived so far is kept.
        """
        key = self._key(repo, upload_id)
        async with self._lock(key):
            await self._require(repo, upload_id)
            if self._parts is not None:
                return (await self._parts.append(repo, upload_id, chunks, start)).size
            return await self._append(repo, upload_id, key, chunks, start)

    async def commit(
        self,
        repo: str,
        upload_id: str,
        digest: Digest,
        chunks: AsyncIterable[bytes] | None = None,
    ) -> int:
        """Append the last chunks, verify, store the blob and link it into `repo`; returns its size.

        On a digest mismatch the session is dropped and `DigestInvalid` raised.
        """
        key = self._key(repo, upload_id)
        async with self._lock(key):
            await self._require(repo, upload_id)
            if self._parts is not None:
                size = await self._parts.commit(repo, upload_id, digest, chunks)
                await write_link(self._driver, paths.layer_link(repo, digest), digest)
                await self._parts.discard(repo, upload_id)
                return size
            if chunks is not None:
                await self._append(repo, upload_id, key, chunks, None)
            size = await self._size(repo, upload_id)
            actual = await self._digest(repo, upload_id, key, size, digest.algorithm)
            if actual != digest:
                await self._discard(repo, upload_id, key)
                raise DigestInvalid(f"uploaded content has digest {actual}, not {digest}")
            await self._store(repo, upload_id, digest, size)
            await write_link(self._driver, paths.layer_link(repo, digest), digest)
            await self._discard(repo, upload_id, key)
            return size

    async def cancel(self, repo: str, upload_id: str) -> None:
        key = self._key(repo, upload_id)
        async with self._lock(key):
            await self._require(repo, upload_id)
            await self._discard(repo, upload_id, key)

    async def put(self, repo: str, digest: Digest, chunks: AsyncIterable[bytes]) -> int:
        """A whole blob in one call (monolithic upload); returns its size."""
        status = await self.start(repo)
        try:
            return await self.commit(repo, status.id, digest, chunks)
        except Exception:
            with contextlib.suppress(StorageError):
                await self.cancel(repo, status.id)
            raise

    # -- internals ---------------------------------------------------------

    @staticmethod
    def _key(repo: str, upload_id: str) -> str:
        if not paths.UPLOAD_ID.fullmatch(upload_id):
            # A client-supplied id; a malformed one names no session, it is not a path error.
            raise BlobUploadUnknown(upload_id)
        return f"{repo}/{upload_id}"

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def _remember(self, key: str, state: _HashState) -> None:
        self._states.put(key, state)

    async def _require(self, repo: str, upload_id: str) -> dt.datetime:
        """When the session started; `BlobUploadUnknown` if there is none."""
        self._key(repo, upload_id)
        path = paths.upload_started_at(repo, upload_id)
        try:
            text = (await self._driver.get_content(path, 1024)).decode("ascii", "replace")
        except FileNotFound:
            raise BlobUploadUnknown(upload_id) from None
        try:
            return dt.datetime.fromisoformat(text.strip())
        except ValueError:
            pass
        try:
            return (await self._driver.stat(path)).modified
        except FileNotFound:
            raise BlobUploadUnknown(upload_id) from None

    async def _size(self, repo: str, upload_id: str) -> int:
        try:
            return (await self._driver.stat(paths.upload_data(repo, upload_id))).size
        except FileNotFound:
            return 0

    async def _state(self, repo: str, upload_id: str, key: str, size: int) -> _HashState:
        state = self._states.get(key)
        if state is None or state.size != size:
            hasher, hashed = await hash_stored(
                self._driver, paths.upload_data(repo, upload_id), RUNNING_ALGORITHM
            )
            state = _HashState(hasher, hashed)
        self._remember(key, state)
        return state

    async def _digest(
        self, repo: str, upload_id: str, key: str, size: int, algorithm: str
    ) -> Digest:
        if algorithm == RUNNING_ALGORITHM:
            state = await self._state(repo, upload_id, key, size)
            return Digest(algorithm, state.hasher.hexdigest())
        hasher, _ = await hash_stored(self._driver, paths.upload_data(repo, upload_id), algorithm)
        return Digest(algorithm, hasher.hexdigest())

    async def _append(
        self,
        repo: str,
        upload_id: str,
        key: str,
        chunks: AsyncIterable[bytes],
        start: int | None,
    ) -> int:
        size = await self._size(repo, upload_id)
        if start is not None and start != size:
            raise RangeInvalid(size)
        state = await self._state(repo, upload_id, key, size)
        writer = await self._driver.open_append(paths.upload_data(repo, upload_id))
        # Batches are written and hashed (in a worker thread, one after the
        # other) while the next ones arrive, so the network and the disk both
        # stay busy; the body waits only while IN_FLIGHT batches are queued.
        queued: collections.deque[asyncio.Task[None]] = collections.deque()
        try:
            async with contextlib.aclosing(_batched(chunks, BATCH_SIZE)) as batches:
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
            await self._discard(repo, upload_id, key)
            raise BlobUploadUnknown(upload_id)
        return writer.size

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

    async def _discard(self, repo: str, upload_id: str, key: str) -> None:
        self._states.pop(key)
        if self._parts is not None:
            await self._parts.discard(repo, upload_id)
            return
        with contextlib.suppress(FileNotFound):
            await self._driver.delete(paths.upload_dir(repo, upload_id))


async def _batched(chunks: AsyncIterable[bytes], size: int) -> AsyncGenerator[list[bytes], None]:
    """Group `chunks` into batches of at least `size` bytes (the last may be short).

    A batch is the chunks themselves, in order: nothing is copied. If `chunks`
    fails, what was gathered is still yielded before the error.
    """
    batch: list[bytes] = []
    gathered = 0
    try:
        async for chunk in chunks:
            batch.append(chunk)
            gathered += len(chunk)
            if gathered >= size:
                yield batch
                batch, gathered = [], 0
    except Exception:
        if batch:
            yield batch
        raise
    if batch:
        yield batch

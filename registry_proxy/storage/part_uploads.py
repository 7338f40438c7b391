"""Upload sessions on a store that cannot append (S3): chunks become parts of a multipart upload.

Everything a session is lives in one object, `_uploads/<id>/session`: the
offset, the running SHA-256 state, the multipart upload and its parts (number,
ETag, size), and — after a newline, as raw bytes — the tail that is still too
short to be a part. One PUT replaces it whole, so any process reads a
consistent session and continues it, without re-reading data already stored.

Where the data goes:

- The first chunk of a session (the usual single PATCH of docker, skopeo,
  podman; a monolithic PUT) is spooled to a
  local temporary file while it is hashed. Its digest is then known, so the
  multipart upload is made for the blob's own key (`blobs/.../data`) and the
  commit, once the digest the client names is the one computed, completes it
  there: no copy, and nothing is read back. Until completed, nothing is
  visible under that key.
- Another chunk on such a session means those bytes are no blob of their own:
  the upload is completed as what it is (a valid blob of the digest of those
  bytes, which nothing references and gc sweeps), copied server-side into the
  first part(s) of an upload bound to the session's `data`, and from then on
  chunks are cut into parts as they arrive (a few in flight while the next one
  fills), the remainder kept as the tail. The commit then completes that upload
  and copies it to the blob's key once.
- A client sending small chunks grows the tail (read back and rewritten with
  each chunk, never more than a part) until a part can be cut; a blob that
  stays shorter than the S3 minimum part is only a tail, written to the
  blob's key with one PUT at commit.

Two writers to one session cannot produce a wrong blob: a blob is only ever
made from the parts a session names by ETag, which S3 checks when completing,
and only after the session's hash state has given the digest the client named.
The loser of a race learns it from reading the session back (416), or at the
commit, which then finds parts replaced (the session is dropped: 404).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import tempfile
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from dataclasses import dataclass, field, replace
from typing import IO, Literal, Protocol

from registry_proxy.reference import Digest
from registry_proxy.storage import paths
from registry_proxy.storage.batching import batched
from registry_proxy.storage.blobs import Blobs
from registry_proxy.storage.driver import (
    FileNotFound,
    MultipartStore,
    StorageDriver,
    TooLarge,
)
from registry_proxy.storage.errors import (
    BlobUploadUnknown,
    DigestInvalid,
    RangeInvalid,
    StorageUnavailable,
)
from registry_proxy.storage.hashing import hash_stored
from registry_proxy.storage.links import exists
from registry_proxy.storage.resumable_hash import ALGORITHM, ResumableSha256

__all__ = ["PartStore", "PartUploads", "abort_session_upload"]

# S3 numbers parts 1..10000.
MAX_PARTS = 10_000
# Parts sent at once (from a spooled chunk, or while a chunk streams in).
PARALLEL_PARTS = 3
_HEADER_LIMIT = 1024 * 1024
VERSION = 1


class PartStore(StorageDriver, MultipartStore, Protocol):
    """A driver with the multipart capability."""


@dataclass(frozen=True, slots=True)
class Part:
    number: int
    etag: str
    size: int


@dataclass(frozen=True, slots=True)
class Multipart:
    path: str
    id: str
    # "blob": bound to the key of the digest of all the session's bytes;
    # "staging": bound to the session's own `data`.
    mode: Literal["blob", "staging"]
    parts: tuple[Part, ...] = ()


@dataclass(frozen=True, slots=True)
class Session:
    size: int
    hash_state: bytes
    writer: str
    upload: Multipart | None = None
    tail: bytes = field(default=b"", repr=False)

    def encode(self) -> bytes:
        upload = None
        if self.upload is not None:
            upload = {
                "path": self.upload.path,
                "id": self.upload.id,
                "mode": self.upload.mode,
                "parts": [[p.number, p.etag, p.size] for p in self.upload.parts],
            }
        header = {
            "version": VERSION,
            "size": self.size,
            "hash": self.hash_state.hex(),
            "writer": self.writer,
            "upload": upload,
        }
        return json.dumps(header, separators=(",", ":")).encode() + b"\n" + self.tail

    @classmethod
    def decode(cls, data: bytes) -> Session:
        head, _, tail = data.partition(b"\n")
        try:
            doc = json.loads(head)
            upload = doc["upload"]
            multipart = None
            if upload is not None:
                parts = tuple(Part(int(n), str(e), int(s)) for n, e, s in upload["parts"])
                mode = upload["mode"]
                if mode not in ("blob", "staging"):
                    raise ValueError(mode)
                multipart = Multipart(str(upload["path"]), str(upload["id"]), mode, parts)
            session = cls(int(doc["size"]), bytes.fromhex(doc["hash"]), str(doc["writer"]))
            ResumableSha256(session.hash_state)  # restorable, or the session is unusable
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageUnavailable(f"unreadable upload session: {exc}") from None
        return replace(session, upload=multipart, tail=tail)


async def abort_session_upload(driver: StorageDriver, repo: str, upload_id: str) -> None:
    """Abort the multipart upload a session holds, if any (before its directory is deleted)."""
    if not isinstance(driver, MultipartStore):
        return
    try:
        data = await driver.get_content(paths.upload_session(repo, upload_id), _limit(driver))
        upload = Session.decode(data).upload
    except (FileNotFound, TooLarge, StorageUnavailable):
        return
    if upload is not None:
        with contextlib.suppress(FileNotFound, StorageUnavailable):
            await driver.abort_multipart(upload.path, upload.id)


def _limit(driver: MultipartStore) -> int:
    return driver.part_size + _HEADER_LIMIT


class PartUploads:
    def __init__(self, driver: PartStore, blobs: Blobs) -> None:
        self._driver = driver
        self._blobs = blobs
        self._part_size = driver.part_size
        self._min_part = driver.min_part_size

    async def create(self, repo: str, upload_id: str) -> None:
        session = Session(0, ResumableSha256().state(), _writer())
        await self._save(repo, upload_id, session)

    async def size(self, repo: str, upload_id: str) -> int:
        return (await self._load(repo, upload_id)).size

    async def append(
        self, repo: str, upload_id: str, chunks: AsyncIterable[bytes], start: int | None
    ) -> int:
        """Add a chunk; the new size. What arrived before a client failure is kept."""
        return (await self._append(repo, upload_id, chunks, start)).size

    async def commit(
        self, repo: str, upload_id: str, digest: Digest, chunks: AsyncIterable[bytes] | None
    ) -> int:
        """Verify and store the blob (not yet linked); `DigestInvalid` drops the session."""
        if chunks is not None:
            session = await self._append(repo, upload_id, chunks, None)
        else:
            session = await self._load(repo, upload_id)
        try:
            if digest.algorithm == ALGORITHM:
                actual = Digest(ALGORITHM, ResumableSha256(session.hash_state).hexdigest())
                if actual == digest and await self._blobs.stat(digest) is None:
                    await self._store(repo, upload_id, session, digest)
            else:
                staged = await self._materialize(repo, upload_id, session)
                hasher, _ = await hash_stored(self._driver, staged, digest.algorithm)
                actual = Digest(digest.algorithm, hasher.hexdigest())
                if actual == digest and await self._blobs.stat(digest) is None:
                    await self._driver.move(staged, paths.blob_data(digest))
        except FileNotFound:
            # Cancelled, purged, or its parts replaced by a racing writer.
            await self.discard(repo, upload_id)
            raise BlobUploadUnknown(upload_id) from None
        if actual != digest:
            await self.discard(repo, upload_id)
            raise DigestInvalid(f"uploaded content has digest {actual}, not {digest}")
        return session.size

    async def discard(self, repo: str, upload_id: str) -> None:
        await abort_session_upload(self._driver, repo, upload_id)
        with contextlib.suppress(FileNotFound):
            await self._driver.delete(paths.upload_dir(repo, upload_id))

    async def _append(
        self, repo: str, upload_id: str, chunks: AsyncIterable[bytes], start: int | None
    ) -> Session:
        """Add a chunk; the session as saved."""
        session = await self._load(repo, upload_id)
        if start is not None and start != session.size:
            raise RangeInvalid(session.size)
        source = _Guarded(chunks)
        incoming = await _nonempty(source)
        if incoming is None:
            # No data (a closing PUT has no body): a "blob" upload stays what it is.
            source.reraise()
            return session
        try:
            if session.size == 0:
                new = await self._append_spooled(session, incoming)
            else:
                if session.upload is not None and session.upload.mode == "blob":
                    session = await self._to_staging(repo, upload_id, session)
                    await self._save(repo, upload_id, session)
                new = await self._append_parts(repo, upload_id, session, incoming)
        except FileNotFound:
            # The multipart upload is gone: cancelled, purged, or committed elsewhere.
            await self.discard(repo, upload_id)
            raise BlobUploadUnknown(upload_id) from None
        await self._save(repo, upload_id, new)
        await self._check_saved(repo, upload_id, new)
        source.reraise()
        return new

    # -- the session object ------------------------------------------------

    async def _load(self, repo: str, upload_id: str) -> Session:
        try:
            data = await self._driver.get_content(
                paths.upload_session(repo, upload_id), _limit(self._driver)
            )
        except FileNotFound:
            raise BlobUploadUnknown(upload_id) from None
        except TooLarge:
            raise StorageUnavailable("upload session larger than a part") from None
        return Session.decode(data)

    async def _save(self, repo: str, upload_id: str, session: Session) -> None:
        await self._driver.put_content(paths.upload_session(repo, upload_id), session.encode())

    async def _check_saved(self, repo: str, upload_id: str, session: Session) -> None:
        if not await exists(self._driver, paths.upload_started_at(repo, upload_id)):
            # Cancelled or purged meanwhile: saving made the session again,
            # outside any upload. Nobody will finish it; drop it now.
            await self.discard(repo, upload_id)
            raise BlobUploadUnknown(upload_id)
        stored = await self._load(repo, upload_id)
        if stored.writer != session.writer:
            # Another writer saved after us: our chunk is not part of the session.
            if session.upload is not None and session.upload.mode == "blob":
                with contextlib.suppress(FileNotFound, StorageUnavailable):
                    await self._driver.abort_multipart(session.upload.path, session.upload.id)
            raise RangeInvalid(stored.size)

    # -- appending ---------------------------------------------------------

    async def _append_spooled(self, session: Session, source: AsyncIterable[bytes]) -> Session:
        try:
            return await self._spool_and_send(session, source)
        except OSError as exc:
            # The local spool (the client's own failures end its chunks quietly, in _Guarded).
            raise StorageUnavailable(f"spooling an upload chunk: {exc.strerror or exc}") from exc

    async def _spool_and_send(self, session: Session, source: AsyncIterable[bytes]) -> Session:
        hasher = ResumableSha256(session.hash_state)
        spool = await asyncio.to_thread(tempfile.TemporaryFile)
        try:
            await asyncio.to_thread(spool.write, session.tail)  # hashed already
            total = len(session.tail)
            async with contextlib.aclosing(batched(source)) as batches:
                async for batch in batches:
                    await asyncio.gather(
                        asyncio.to_thread(spool.writelines, batch),
                        asyncio.to_thread(_feed, hasher, batch),
                    )
                    total += sum(len(piece) for piece in batch)
                    # Written: not held while a trickling client completes the next batch.
                    del batch
            state = hasher.state()
            if total < self._min_part:
                await asyncio.to_thread(spool.seek, 0)
                tail = await asyncio.to_thread(spool.read)
                return Session(total, state, _writer(), None, tail)
            digest = Digest(ALGORITHM, hasher.hexdigest())
            target = paths.blob_data(digest)
            multipart_id = await self._driver.create_multipart(target)
            parts = await self._upload_spool(target, multipart_id, spool, total)
            return Session(total, state, _writer(), Multipart(target, multipart_id, "blob", parts))
        finally:
            await asyncio.to_thread(spool.close)

    async def _upload_spool(
        self, target: str, multipart_id: str, spool: IO[bytes], total: int
    ) -> tuple[Part, ...]:
        """The spooled bytes as parts of `part_size` (the last shorter), a few at a time."""
        offsets = list(range(0, total, self._part_size))
        if len(offsets) > MAX_PARTS:
            raise StorageUnavailable(f"a blob of {total} bytes needs more than {MAX_PARTS} parts")
        read_lock = asyncio.Lock()
        slots = asyncio.Semaphore(PARALLEL_PARTS)

        async def send(number: int, offset: int) -> Part:
            async with slots:
                async with read_lock:
                    data = await asyncio.to_thread(_read_at, spool, offset, self._part_size)
                etag = await self._driver.upload_part(target, multipart_id, number, data)
                return Part(number, etag, len(data))

        tasks = [asyncio.ensure_future(send(n, o)) for n, o in enumerate(offsets, 1)]
        try:
            return tuple(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _to_staging(self, repo: str, upload_id: str, session: Session) -> Session:
        """A "blob" upload that is getting more data: complete it, copy it into a staging upload."""
        upload = session.upload
        assert upload is not None and upload.mode == "blob"
        digest = Digest(ALGORITHM, ResumableSha256(session.hash_state).hexdigest())
        if await self._blobs.stat(digest) is None:
            try:
                await self._driver.complete_multipart(upload.path, upload.id, _named(upload.parts))
            except FileNotFound:
                # A racing writer completed it first; with no blob made, it is gone for good.
                if await self._blobs.stat(digest) is None:
                    raise
        else:
            # Those bytes are stored already; never overwrite a blob others may be reading.
            with contextlib.suppress(FileNotFound):
                await self._driver.abort_multipart(upload.path, upload.id)
        staging = paths.upload_data(repo, upload_id)
        multipart_id = await self._driver.create_multipart(staging)
        copied = await self._driver.copy_parts(staging, multipart_id, upload.path, session.size)
        parts = tuple(Part(*part) for part in copied)
        return replace(session, upload=Multipart(staging, multipart_id, "staging", parts))

    async def _append_parts(
        self, repo: str, upload_id: str, session: Session, source: AsyncIterable[bytes]
    ) -> Session:
        """Cut parts from the tail and the chunk as they come; the staging upload is made when
        the first part is (a client sending small chunks only grows the tail until then)."""
        upload = session.upload
        assert upload is None or upload.mode == "staging"
        hasher = ResumableSha256(session.hash_state)
        buffer = bytearray(session.tail)
        parts = list(upload.parts) if upload is not None else []
        number = parts[-1].number if parts else 0
        size = session.size
        # Parts in flight (a few, like the spool's) while the next one fills; in order.
        pending: collections.deque[asyncio.Future[Part]] = collections.deque()
        try:
            async with contextlib.aclosing(batched(source)) as batches:
                async for batch in batches:
                    await asyncio.to_thread(_feed, hasher, batch)
                    size += _extend(buffer, batch)
                    del batch  # copied into the buffer: not held a second time
                    while len(buffer) >= self._part_size:
                        data = bytes(buffer[: self._part_size])
                        del buffer[: self._part_size]
                        number += 1
                        if number > MAX_PARTS:
                            raise StorageUnavailable(f"an upload takes at most {MAX_PARTS} parts")
                        if len(pending) >= PARALLEL_PARTS:
                            parts.append(await pending.popleft())
                        if upload is None:
                            staging = paths.upload_data(repo, upload_id)
                            created = await self._driver.create_multipart(staging)
                            upload = Multipart(staging, created, "staging")
                        pending.append(asyncio.ensure_future(self._part(upload, number, data)))
            while pending:
                parts.append(await pending.popleft())
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        new_upload = None if upload is None else replace(upload, parts=tuple(parts))
        return Session(size, hasher.state(), _writer(), new_upload, bytes(buffer))

    async def _part(self, upload: Multipart, number: int, data: bytes) -> Part:
        etag = await self._driver.upload_part(upload.path, upload.id, number, data)
        return Part(number, etag, len(data))

    # -- committing --------------------------------------------------------

    async def _store(self, repo: str, upload_id: str, session: Session, digest: Digest) -> None:
        """Put the verified bytes under `digest`'s key."""
        target = paths.blob_data(digest)
        upload = session.upload
        if upload is None:
            await self._driver.put_content(target, session.tail)
        elif upload.mode == "blob" and upload.path == target:
            await self._driver.complete_multipart(upload.path, upload.id, _named(upload.parts))
        else:
            staged = await self._materialize(repo, upload_id, session)
            await self._driver.move(staged, target)

    async def _materialize(self, repo: str, upload_id: str, session: Session) -> str:
        """The session's bytes as the object `_uploads/<id>/data`; its path."""
        staging = paths.upload_data(repo, upload_id)
        if session.upload is None:
            await self._driver.put_content(staging, session.tail)
            return staging
        if session.upload.mode == "blob":
            session = await self._to_staging(repo, upload_id, session)
        upload = session.upload
        assert upload is not None
        parts = list(upload.parts)
        if session.tail or not parts:
            number = parts[-1].number + 1 if parts else 1
            parts.append(await self._part(upload, number, session.tail))
        await self._driver.complete_multipart(upload.path, upload.id, _named(tuple(parts)))
        return staging


class _Guarded:
    """The client's chunks, ending quietly if the client fails; `reraise` raises it afterwards."""

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._chunks = chunks
        self._failure: Exception | None = None

    async def __aiter__(self) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in self._chunks:
                yield chunk
        except Exception as exc:
            self._failure = exc

    def reraise(self) -> None:
        if self._failure is not None:
            raise self._failure


async def _nonempty(source: _Guarded) -> AsyncIterable[bytes] | None:
    """`source` from its first non-empty chunk on, or None if it has none."""
    chunks = aiter(source)
    async for first in chunks:
        if first:
            return _prepended(first, chunks)
    return None


async def _prepended(first: bytes, rest: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    yield first
    async for chunk in rest:
        yield chunk


def _writer() -> str:
    return uuid.uuid4().hex


def _named(parts: tuple[Part, ...]) -> list[tuple[int, str]]:
    return [(p.number, p.etag) for p in parts]


def _read_at(spool: IO[bytes], offset: int, size: int) -> bytes:
    spool.seek(offset)
    return spool.read(size)


def _feed(hasher: ResumableSha256, batch: list[bytes]) -> None:
    for piece in batch:
        hasher.update(piece)


def _extend(buffer: bytearray, batch: list[bytes]) -> int:
    """Append `batch`'s pieces to `buffer`; how many bytes that was."""
    for piece in batch:
        buffer += piece
    return sum(len(piece) for piece in batch)

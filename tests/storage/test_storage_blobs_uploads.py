"""Blobs and resumable uploads, on both drivers."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
from collections.abc import AsyncIterator, Sequence

import pytest

from registry_proxy.reference import Digest
from registry_proxy.storage import Storage, paths
from registry_proxy.storage.driver import AppendWriter, Feed, FileNotFound, StorageDriver
from registry_proxy.storage.errors import (
    BlobUnknown,
    BlobUploadUnknown,
    DigestInvalid,
    RangeInvalid,
    StorageUnavailable,
)
from registry_proxy.storage.memory import MemoryDriver
from tests.storage.helpers import collect, push_blob, session_bytes, stream

pytestmark = pytest.mark.anyio

REPO = "library/app"
MiB = 1024 * 1024


async def upload_dirs(driver: StorageDriver, repo: str = REPO) -> list[str]:
    try:
        return await driver.list(f"{paths.repository(repo)}/_uploads")
    except FileNotFound:
        return []


async def test_chunked_upload(storage: Storage, driver: StorageDriver) -> None:
    parts = [b"first chunk,", b"second chunk,", b"last"]
    data = b"".join(parts)
    digest = Digest.of(data)
    status = await storage.uploads.start(REPO)
    assert re.fullmatch(r"[0-9a-f-]{36}", status.id)
    assert status.offset == 0
    offset = 0
    for part in parts:
        assert await storage.uploads.append(REPO, status.id, stream(part), offset) == offset + len(
            part
        )
        offset += len(part)
    assert (await storage.uploads.status(REPO, status.id)).offset == len(data)
    assert await storage.uploads.commit(REPO, status.id, digest) == len(data)

    assert await storage.blobs.stat(digest) == len(data)
    assert await storage.blobs.linked(REPO, digest) == len(data)
    assert await storage.blobs.linked("other/repo", digest) is None
    assert await collect(storage.blobs.open(digest)) == data
    with pytest.raises(BlobUploadUnknown):
        await storage.uploads.status(REPO, status.id)
    assert await upload_dirs(driver) == []


async def test_streamed_chunks_and_final_chunk_on_commit(storage: Storage) -> None:
    data = b"a" * 100 + b"b" * 100 + b"c" * 50
    status = await storage.uploads.start(REPO)
    assert await storage.uploads.append(REPO, status.id, stream(data[:60], data[60:200])) == 200
    size = await storage.uploads.commit(REPO, status.id, Digest.of(data), stream(data[200:]))
    assert size == 250
    assert await collect(storage.blobs.open(Digest.of(data))) == data


async def test_many_small_chunks_are_batched(storage: Storage) -> None:
    data = hashlib.sha256(b"seed").digest() * (3 * MiB // 32 + 7)
    pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    digest = Digest.of(data)
    assert await storage.uploads.put(REPO, digest, stream(*pieces)) == len(data)
    chunks = [chunk async for chunk in storage.blobs.open(digest)]
    assert b"".join(chunks) == data
    assert max(len(c) for c in chunks) <= MiB
    assert len(chunks) == 4


async def test_range_invalid_writes_nothing(storage: Storage) -> None:
    status = await storage.uploads.start(REPO)
    await storage.uploads.append(REPO, status.id, stream(b"0123456789"), 0)
    for wrong in (0, 5, 11, 100):
        with pytest.raises(RangeInvalid) as caught:
            await storage.uploads.append(REPO, status.id, stream(b"XXXX"), wrong)
        assert caught.value.current_size == 10
    assert (await storage.uploads.status(REPO, status.id)).offset == 10
    await storage.uploads.append(REPO, status.id, stream(b"abc"), 10)
    data = b"0123456789abc"
    assert await storage.uploads.commit(REPO, status.id, Digest.of(data)) == 13
    assert await collect(storage.blobs.open(Digest.of(data))) == data


async def test_digest_mismatch_keeps_nothing(storage: Storage, driver: StorageDriver) -> None:
    status = await storage.uploads.start(REPO)
    await storage.uploads.append(REPO, status.id, stream(b"actual content"))
    claimed = Digest.of(b"something else")
    with pytest.raises(DigestInvalid):
        await storage.uploads.commit(REPO, status.id, claimed)
    with pytest.raises(BlobUploadUnknown):
        await storage.uploads.status(REPO, status.id)
    assert await storage.blobs.stat(claimed) is None
    assert await storage.blobs.stat(Digest.of(b"actual content")) is None
    assert await storage.blobs.linked(REPO, claimed) is None
    assert await upload_dirs(driver) == []


async def test_monolithic_mismatch_keeps_nothing(storage: Storage, driver: StorageDriver) -> None:
    with pytest.raises(DigestInvalid):
        await storage.uploads.put(REPO, Digest.of(b"other"), stream(b"content"))
    assert await upload_dirs(driver) == []
    assert await storage.blobs.stat(Digest.of(b"content")) is None


async def test_blob_is_invisible_until_commit(storage: Storage) -> None:
    data = b"not yet"
    digest = Digest.of(data)
    status = await storage.uploads.start(REPO)
    await storage.uploads.append(REPO, status.id, stream(data))
    assert await storage.blobs.stat(digest) is None
    assert await storage.blobs.linked(REPO, digest) is None
    await storage.uploads.commit(REPO, status.id, digest)
    assert await storage.blobs.linked(REPO, digest) == len(data)


async def test_upload_survives_a_restart(driver: StorageDriver) -> None:
    first = Storage(driver)
    status = await first.uploads.start(REPO)
    await first.uploads.append(REPO, status.id, stream(b"before restart, "), 0)
    # A new process (or another replica): no hash state in memory.
    second = Storage(driver)
    assert (await second.uploads.status(REPO, status.id)).offset == 16
    await second.uploads.append(REPO, status.id, stream(b"after restart"), 16)
    data = b"before restart, after restart"
    assert await Storage(driver).uploads.commit(REPO, status.id, Digest.of(data)) == len(data)
    assert await collect(second.blobs.open(Digest.of(data))) == data


async def test_replicas_taking_turns(driver: StorageDriver) -> None:
    one, two = Storage(driver), Storage(driver)
    status = await one.uploads.start(REPO)
    parts = [b"p1-", b"p2-", b"p3-", b"p4"]
    offset = 0
    for i, part in enumerate(parts):
        replica = (one, two)[i % 2]
        offset = await replica.uploads.append(REPO, status.id, stream(part), offset)
    data = b"".join(parts)
    # `one` holds a stale hash state (it saw p1 and p3 only); it must notice.
    assert await one.uploads.commit(REPO, status.id, Digest.of(data)) == len(data)
    assert await one.blobs.stat(Digest.of(data)) == len(data)


async def test_a_dropped_client_keeps_what_arrived(storage: Storage) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        yield b"y" * 1000
        raise ConnectionResetError("client went away")

    status = await storage.uploads.start(REPO)
    with pytest.raises(ConnectionResetError):
        await storage.uploads.append(REPO, status.id, broken())
    assert (await storage.uploads.status(REPO, status.id)).offset == 2000
    await storage.uploads.append(REPO, status.id, stream(b"z"), 2000)
    data = b"x" * 1000 + b"y" * 1000 + b"z"
    assert await storage.uploads.commit(REPO, status.id, Digest.of(data)) == 2001


async def test_concurrent_appends_are_serialized(storage: Storage) -> None:
    status = await storage.uploads.start(REPO)
    await asyncio.gather(
        *(storage.uploads.append(REPO, status.id, stream(bytes([65 + i]) * 10)) for i in range(5))
    )
    assert (await storage.uploads.status(REPO, status.id)).offset == 50
    stored = await session_bytes(storage.driver, REPO, status.id)
    assert await storage.uploads.commit(REPO, status.id, Digest.of(stored)) == 50


async def test_cancel(storage: Storage, driver: StorageDriver) -> None:
    status = await storage.uploads.start(REPO)
    await storage.uploads.append(REPO, status.id, stream(b"abandoned"))
    await storage.uploads.cancel(REPO, status.id)
    assert await upload_dirs(driver) == []
    with pytest.raises(BlobUploadUnknown):
        await storage.uploads.status(REPO, status.id)
    with pytest.raises(BlobUploadUnknown):
        await storage.uploads.cancel(REPO, status.id)
    with pytest.raises(BlobUploadUnknown):
        await storage.uploads.append(REPO, status.id, stream(b"more"))


@pytest.mark.parametrize(
    "upload_id",
    [
        "../../../../blobs",
        "not-a-uuid",
        "",
        "0B4D3C2A-1111-4222-8333-444455556666",
        "0b4d3c2a-1111-4222-8333-444455556666/../x",
        "0b4d3c2a-1111-4222-8333-44445555666\x00",
    ],
)
async def test_malformed_upload_ids_are_unknown(storage: Storage, upload_id: str) -> None:
    with pytest.raises(BlobUploadUnknown):
        await storage.uploads.status(REPO, upload_id)
    with pytest.raises(BlobUploadUnknown):
        await storage.uploads.append(REPO, upload_id, stream(b"x"))
    with pytest.raises(BlobUploadUnknown):
        await storage.uploads.commit(REPO, upload_id, Digest.of(b"x"))
    with pytest.raises(BlobUploadUnknown):
        await storage.uploads.cancel(REPO, upload_id)


async def test_unknown_and_foreign_sessions(storage: Storage) -> None:
    with pytest.raises(BlobUploadUnknown):
        await storage.uploads.status(REPO, "0b4d3c2a-1111-4222-8333-444455556666")
    status = await storage.uploads.start(REPO)
    with pytest.raises(BlobUploadUnknown):
        await storage.uploads.status("someone/else", status.id)


async def test_started_at_is_rfc3339(storage: Storage, driver: StorageDriver) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    status = await storage.uploads.start(REPO)
    text = (await driver.get_content(paths.upload_started_at(REPO, status.id))).decode()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text)
    assert (await storage.uploads.status(REPO, status.id)).started_at == status.started_at
    assert before <= status.started_at <= dt.datetime.now(dt.UTC)
    assert await session_bytes(driver, REPO, status.id) == b""


async def test_empty_blob(storage: Storage) -> None:
    digest = Digest.of(b"")
    status = await storage.uploads.start(REPO)
    assert await storage.uploads.commit(REPO, status.id, digest) == 0
    assert await storage.blobs.linked(REPO, digest) == 0
    assert await collect(storage.blobs.open(digest)) == b""


async def test_sha512_digest(storage: Storage) -> None:
    data = b"hashed differently"
    digest = Digest.of(data, "sha512")
    assert await storage.uploads.put(REPO, digest, stream(data)) == len(data)
    assert await storage.blobs.linked(REPO, digest) == len(data)
    with pytest.raises(DigestInvalid):
        await storage.uploads.put(REPO, Digest.of(b"other", "sha512"), stream(data))


async def test_uploading_an_existing_blob_links_it(storage: Storage) -> None:
    digest = await push_blob(storage, REPO, b"shared layer")
    assert await storage.uploads.put("second/repo", digest, stream(b"shared layer")) == 12
    assert await storage.blobs.linked("second/repo", digest) == 12
    assert await collect(storage.blobs.open(digest)) == b"shared layer"


async def test_open_ranges(storage: Storage) -> None:
    data = bytes(range(256)) * (MiB // 128)  # 2 MiB
    digest = await push_blob(storage, REPO, data)
    assert await collect(storage.blobs.open(digest, 0, 0)) == data[:1]
    assert await collect(storage.blobs.open(digest, 10, 19)) == data[10:20]
    assert await collect(storage.blobs.open(digest, MiB - 5, MiB + 5)) == data[MiB - 5 : MiB + 6]
    assert await collect(storage.blobs.open(digest, len(data) - 3)) == data[-3:]
    chunks = [c async for c in storage.blobs.open(digest)]
    assert [len(c) for c in chunks] == [MiB, MiB]
    with pytest.raises(BlobUnknown):
        await collect(storage.blobs.open(Digest.of(b"nothing")))


async def test_mount_link_and_unlink(storage: Storage) -> None:
    digest = await push_blob(storage, "source/repo", b"mount me")
    await storage.blobs.link("target/repo", digest)
    assert await storage.blobs.linked("target/repo", digest) == 8
    with pytest.raises(BlobUnknown):
        await storage.blobs.link("target/repo", Digest.of(b"never stored"))
    await storage.blobs.unlink("target/repo", digest)
    assert await storage.blobs.linked("target/repo", digest) is None
    assert await storage.blobs.linked("source/repo", digest) == 8
    assert await storage.blobs.stat(digest) == 8
    with pytest.raises(BlobUnknown):
        await storage.blobs.unlink("target/repo", digest)


async def test_a_link_without_its_blob_is_not_linked(storage: Storage) -> None:
    digest = await push_blob(storage, REPO, b"swept later")
    await storage.driver.delete(paths.blob_dir(digest))
    assert await storage.blobs.linked(REPO, digest) is None
    with pytest.raises(BlobUnknown):
        await storage.blobs.unlink(REPO, digest)


def _pattern(seed: int, size: int) -> bytes:
    block = hashlib.sha256(f"upload {seed}".encode()).digest()
    return (block * (size // len(block) + 1))[:size]


async def _interleaved(data: bytes, piece: int) -> AsyncIterator[bytes]:
    """`data` in pieces of about `piece` bytes, yielding to the loop between them."""
    for start in range(0, len(data), piece):
        await asyncio.sleep(0)
        yield data[start : start + piece]


async def test_concurrent_uploads_keep_their_own_bytes(storage: Storage) -> None:
    # Batches of several uploads are in flight at once, in pieces of sizes that
    # never line up with a batch; each blob must read back as exactly its bytes.
    blobs = [_pattern(i, 2 * MiB + 1000 * i + 7) for i in range(6)]
    pieces = [65536, 100_003, 1 << 20, 4096, 333_333, 3 * MiB]

    async def monolithic(data: bytes, piece: int) -> int:
        return await storage.uploads.put(REPO, Digest.of(data), _interleaved(data, piece))

    async def chunked(data: bytes, piece: int) -> int:
        status = await storage.uploads.start(REPO)
        cut = len(data) // 3
        await storage.uploads.append(REPO, status.id, _interleaved(data[:cut], piece), 0)
        await storage.uploads.append(REPO, status.id, _interleaved(data[cut:], piece), cut)
        return await storage.uploads.commit(REPO, status.id, Digest.of(data))

    sizes = await asyncio.gather(
        *(
            (monolithic if i % 2 else chunked)(data, piece)
            for i, (data, piece) in enumerate(zip(blobs, pieces, strict=True))
        )
    )
    assert sizes == [len(data) for data in blobs]
    for data in blobs:
        assert await storage.blobs.linked(REPO, Digest.of(data)) == len(data)
        assert await collect(storage.blobs.open(Digest.of(data))) == data


async def test_a_client_dropped_while_a_batch_is_written_keeps_every_byte(
    storage: Storage,
) -> None:
    # The body fails right after a whole batch went to be written, and again
    # mid-batch: the session holds exactly what arrived, and its hash agrees.
    data = _pattern(99, 5 * MiB + 123)

    def broken(part: bytes) -> AsyncIterator[bytes]:
        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in _interleaved(part, 256 * 1024):
                yield chunk
            raise ConnectionResetError("client went away")

        return chunks()

    status = await storage.uploads.start(REPO)
    with pytest.raises(ConnectionResetError):
        await storage.uploads.append(REPO, status.id, broken(data[: 2 * MiB]))
    assert (await storage.uploads.status(REPO, status.id)).offset == 2 * MiB
    with pytest.raises(ConnectionResetError):
        await storage.uploads.append(REPO, status.id, broken(data[2 * MiB : 3 * MiB + 5]))
    assert (await storage.uploads.status(REPO, status.id)).offset == 3 * MiB + 5
    await storage.uploads.append(REPO, status.id, stream(data[3 * MiB + 5 :]), 3 * MiB + 5)
    assert await storage.uploads.commit(REPO, status.id, Digest.of(data)) == len(data)
    assert await collect(storage.blobs.open(Digest.of(data))) == data


class _FailingAppender:
    """Wraps a real appender; its second write fails after landing nothing."""

    def __init__(self, inner: AppendWriter) -> None:
        self.inner = inner
        self.writes = 0

    @property
    def size(self) -> int:
        return self.inner.size

    async def write(self, pieces: Sequence[bytes], feed: Feed | None = None) -> None:
        self.writes += 1
        if self.writes == 2:
            raise StorageUnavailable("disk full")
        await self.inner.write(pieces, feed)

    async def close(self, *, sync: bool = False) -> None:
        await self.inner.close(sync=sync)


class _FailingDriver(MemoryDriver):
    async def open_append(self, path: str) -> _FailingAppender:  # type: ignore[override]
        return _FailingAppender(await super().open_append(path))


async def test_nothing_is_written_after_a_batch_that_failed() -> None:
    # Batches queued behind the failed one must not land: they would leave a
    # gap, and every byte after it would sit at the wrong offset.
    storage = Storage(_FailingDriver())
    data = _pattern(7, 5 * MiB)
    status = await storage.uploads.start(REPO)
    with pytest.raises(StorageUnavailable):
        await storage.uploads.append(REPO, status.id, _interleaved(data, 256 * 1024))
    assert await session_bytes(storage.driver, REPO, status.id) == data[:MiB]
    assert (await storage.uploads.status(REPO, status.id)).offset == MiB
    # The hash state was dropped with the failure: the rest still commits correctly.
    await storage.uploads.append(REPO, status.id, stream(data[MiB:]), MiB)
    assert await storage.uploads.commit(REPO, status.id, Digest.of(data)) == len(data)

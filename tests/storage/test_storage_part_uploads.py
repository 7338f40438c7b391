"""Uploads on S3 (a real Swift): chunks become parts of multipart uploads, sessions live in the
bucket; and large objects are copied in parts.

Each test has its own bucket; "another process" is another driver (its own
client, connections and threads) over that bucket, with its own `Storage`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
from collections.abc import AsyncIterator, Iterator

import pytest

from registry_proxy.reference import Digest
from registry_proxy.storage import Storage, paths
from registry_proxy.storage.errors import (
    BlobUploadUnknown,
    DigestInvalid,
    RangeInvalid,
    StorageUnavailable,
)
from registry_proxy.storage.purge import purge_uploads
from registry_proxy.storage.s3 import PARALLEL_COPY_SIZE, S3Driver
from tests.storage.conftest import S3_ROOT, s3_driver
from tests.storage.helpers import collect, stream
from tests.support.swift import Swift

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

REPO = "team/app"
MiB = 1024 * 1024
PART = 10 * MiB  # the default chunksize


@pytest.fixture
def bucket(swift: Swift) -> str:
    return swift.new_bucket()


class CopyWatch(S3Driver):
    """The S3 driver, noting every server-side copy it asks the store for."""

    copies: list[tuple[str, str]]

    async def _copy(self, path: str, source: str, target: str, size: int) -> None:
        self.copies.append((source, target))
        await super()._copy(path, source, target, size)

    async def copy_parts(
        self, path: str, upload_id: str, source: str, size: int
    ) -> list[tuple[int, str, int]]:
        self.copies.append((self.key(source), self.key(path)))
        return await super().copy_parts(path, upload_id, source, size)


def watched(swift: Swift, bucket: str) -> CopyWatch:
    driver = CopyWatch(s3_driver(swift, bucket).settings)
    driver.copies = []
    return driver


@pytest.fixture
async def processes(swift: Swift, bucket: str) -> AsyncIterator[list[CopyWatch]]:
    """Three drivers over one bucket: what three registry processes would hold."""
    drivers = [watched(swift, bucket) for _ in range(3)]
    yield drivers
    for driver in drivers:
        await driver.close()


@pytest.fixture
def first(processes: list[S3Driver]) -> Storage:
    return Storage(processes[0])


@pytest.fixture
def second(processes: list[S3Driver]) -> Storage:
    return Storage(processes[1])


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


class Bucket:
    """What is in the bucket, seen through plain S3 calls."""

    def __init__(self, swift: Swift, name: str) -> None:
        self.swift, self.name = swift, name

    def objects(self, below: str = "") -> list[str]:
        with self.swift.client() as client:
            return client.keys(self.name, S3_ROOT.strip("/") + "/" + below)

    def pending_uploads(self) -> list[str]:
        with self.swift.client() as client:
            return [u["Key"] for u in client.multipart_uploads(self.name)]

    def etag(self, path: str) -> str:
        with self.swift.client() as client:
            head = client._client.head_object(Bucket=self.name, Key=S3_ROOT.strip("/") + "/" + path)
            return str(head["ETag"]).strip('"')


@pytest.fixture
def stored(swift: Swift, bucket: str) -> Bucket:
    return Bucket(swift, bucket)


def assert_clean(stored: Bucket) -> None:
    """No session object and no multipart upload is left behind."""
    assert [k for k in stored.objects() if "/_uploads/" in k] == []
    assert stored.pending_uploads() == []


async def test_one_patch_is_completed_into_the_blob_key(
    first: Storage, processes: list[CopyWatch], stored: Bucket
) -> None:
    data = random_bytes(2 * PART + 123)
    digest = Digest.of(data)
    session = await first.uploads.start(REPO)
    assert await first.uploads.append(REPO, session.id, stream(*pieces(data, 65536)), 0) == len(
        data
    )
    # Nothing under the blob's key until the commit has checked the digest.
    assert await first.blobs.stat(digest) is None
    assert stored.pending_uploads() == [f"{S3_ROOT.strip('/')}/{paths.blob_data(digest)}"]
    # The closing PUT, as the HTTP route sends it: with its (empty) body.
    assert await first.uploads.commit(REPO, session.id, digest, stream()) == len(data)
    assert await collect(first.blobs.open(digest)) == data
    # The blob is the multipart upload itself (three parts), not a copy of one.
    assert stored.etag(paths.blob_data(digest)).endswith("-3")
    assert processes[0].copies == []
    assert_clean(stored)


async def test_a_monolithic_put_of_a_large_blob(
    first: Storage, processes: list[CopyWatch], stored: Bucket
) -> None:
    data = random_bytes(PART + 5)
    digest = Digest.of(data)
    assert await first.uploads.put(REPO, digest, stream(data)) == len(data)
    assert await first.blobs.linked(REPO, digest) == len(data)
    assert processes[0].copies == []
    assert_clean(stored)


async def test_started_on_one_continued_on_another_committed_on_the_first(
    first: Storage, second: Storage, processes: list[CopyWatch], stored: Bucket
) -> None:
    chunks = [random_bytes(12 * MiB), random_bytes(7 * MiB), random_bytes(1000)]
    data = b"".join(chunks)
    digest = Digest.of(data)
    session = await first.uploads.start(REPO)
    offset = await first.uploads.append(REPO, session.id, stream(chunks[0]), 0)
    assert (await second.uploads.status(REPO, session.id)).offset == offset
    offset = await second.uploads.append(REPO, session.id, stream(chunks[1]), offset)
    offset = await second.uploads.append(REPO, session.id, stream(chunks[2]), offset)
    assert offset == len(data)
    assert await first.uploads.commit(REPO, session.id, digest) == len(data)
    assert await collect(second.blobs.open(digest)) == data
    # The first chunk, once it was no blob of its own, was kept as one: a valid,
    # unreferenced blob that gc sweeps.
    leftover = Digest.of(chunks[0])
    assert await collect(first.blobs.open(leftover)) == chunks[0]
    # One copy of the first chunk into the staging upload, one of the whole at commit.
    root = S3_ROOT.strip("/")
    staging = f"{root}/{paths.upload_data(REPO, session.id)}"
    assert processes[1].copies == [(f"{root}/{paths.blob_data(leftover)}", staging)]
    assert processes[0].copies == [(staging, f"{root}/{paths.blob_data(digest)}")]
    assert_clean(stored)


async def test_restart_in_the_middle(swift: Swift, bucket: str, stored: Bucket) -> None:
    data = random_bytes(23 * MiB + 17)
    digest = Digest.of(data)
    before = s3_driver(swift, bucket)
    session = await Storage(before).uploads.start(REPO)
    await Storage(before).uploads.append(REPO, session.id, stream(data[: 15 * MiB]), 0)
    await before.close()  # the process is gone; its memory with it

    after = s3_driver(swift, bucket)
    try:
        storage = Storage(after)
        assert (await storage.uploads.status(REPO, session.id)).offset == 15 * MiB
        with pytest.raises(RangeInvalid):
            await storage.uploads.append(REPO, session.id, stream(b"x"), 0)
        await storage.uploads.append(REPO, session.id, stream(data[15 * MiB :]), 15 * MiB)
        assert await storage.uploads.commit(REPO, session.id, digest) == len(data)
        assert await collect(storage.blobs.open(digest)) == data
    finally:
        await after.close()
    assert_clean(stored)


async def test_small_chunks_are_buffered_into_parts(
    first: Storage, second: Storage, processes: list[CopyWatch], stored: Bucket
) -> None:
    data = random_bytes(23 * MiB + 5)
    digest = Digest.of(data)
    session = await first.uploads.start(REPO)
    offset = 0
    for i, piece in enumerate(pieces(data, 700 * 1024)):
        offset = await (first, second)[i % 2].uploads.append(
            REPO, session.id, stream(piece), offset
        )
        # The tail kept between requests never grows beyond a part.
        record = await processes[2].get_content(paths.upload_session(REPO, session.id), 2 * PART)
        assert len(record.partition(b"\n")[2]) < PART
    assert offset == len(data)
    assert await Storage(processes[2]).uploads.commit(REPO, session.id, digest) == len(data)
    assert await collect(first.blobs.open(digest)) == data
    # Nothing was a blob of its own on the way: one copy, from the staging upload at commit.
    assert [len(d.copies) for d in processes] == [0, 0, 1]
    assert_clean(stored)


@pytest.mark.parametrize("chunk_sizes", [[12 * MiB], [12 * MiB, 3 * MiB], [1 * MiB]])
async def test_a_digest_mismatch_leaves_nothing_behind(
    first: Storage, stored: Bucket, chunk_sizes: list[int]
) -> None:
    chunks = [random_bytes(size) for size in chunk_sizes]
    data = b"".join(chunks)
    session = await first.uploads.start(REPO)
    for chunk in chunks:
        await first.uploads.append(REPO, session.id, stream(chunk))
    claimed = Digest.of(data + b"!")
    with pytest.raises(DigestInvalid):
        await first.uploads.commit(REPO, session.id, claimed)
    assert await first.blobs.stat(claimed) is None
    assert await first.blobs.stat(Digest.of(data)) is None
    assert await first.blobs.linked(REPO, claimed) is None
    with pytest.raises(BlobUploadUnknown):
        await first.uploads.status(REPO, session.id)
    assert_clean(stored)


async def test_racing_writers_never_make_a_wrong_blob(
    first: Storage, second: Storage, stored: Bucket
) -> None:
    head = random_bytes(12 * MiB)
    tails = [random_bytes(11 * MiB), random_bytes(11 * MiB)]
    candidates = [Digest.of(head + tail) for tail in tails]
    for _round in range(3):
        session = await first.uploads.start(REPO)
        await first.uploads.append(REPO, session.id, stream(head), 0)
        await asyncio.gather(
            *(
                s.uploads.append(REPO, session.id, stream(tail), len(head))
                for s, tail in zip((first, second), tails, strict=True)
            ),
            return_exceptions=True,
        )
        for storage, digest in zip((first, second), candidates, strict=True):
            try:
                await storage.uploads.commit(REPO, session.id, digest)
            except (DigestInvalid, BlobUploadUnknown, RangeInvalid):
                continue
        # Whatever was stored is exactly the bytes its digest names.
        for digest, tail in zip(candidates, tails, strict=True):
            if await first.blobs.stat(digest) is not None:
                assert await collect(first.blobs.open(digest)) == head + tail
    assert [k for k in stored.objects() if "/_uploads/" in k] == []


async def test_cancel_and_purge_abort_the_multipart_upload(
    first: Storage, second: Storage, stored: Bucket
) -> None:
    cancelled = await first.uploads.start(REPO)
    await first.uploads.append(REPO, cancelled.id, stream(random_bytes(12 * MiB)))
    await second.uploads.cancel(REPO, cancelled.id)
    purged = await first.uploads.start(REPO)
    await first.uploads.append(REPO, purged.id, stream(random_bytes(6 * MiB)))
    await first.uploads.append(REPO, purged.id, stream(random_bytes(6 * MiB)))
    assert stored.pending_uploads() != []
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    report = await purge_uploads(second.driver, later)
    assert [p.upload_id for p in report.purged] == [purged.id]
    assert_clean(stored)


async def test_sha512_digests_of_large_blobs(first: Storage, stored: Bucket) -> None:
    data = random_bytes(11 * MiB)
    digest = Digest.of(data, "sha512")
    session = await first.uploads.start(REPO)
    await first.uploads.append(REPO, session.id, stream(data[: 6 * MiB]))
    assert await first.uploads.commit(REPO, session.id, digest, stream(data[6 * MiB :])) == len(
        data
    )
    assert await collect(first.blobs.open(digest)) == data
    with pytest.raises(DigestInvalid):
        await first.uploads.put(REPO, Digest.of(b"other", "sha512"), stream(data))
    assert [k for k in stored.objects() if "/_uploads/" in k] == []


async def test_a_large_object_is_moved_in_copied_parts(
    processes: list[CopyWatch], stored: Bucket
) -> None:
    driver = processes[0]
    data = random_bytes(PARALLEL_COPY_SIZE + 3 * MiB)
    await driver.put_content("big/source", data)
    await driver.move("big/source", "big/target")
    assert driver.copies == [(driver.key("big/source"), driver.key("big/target"))]
    hasher = hashlib.sha256()
    async for chunk in driver.reader("big/target", chunk_size=8 * MiB):
        hasher.update(chunk)
    assert hasher.digest() == hashlib.sha256(data).digest()
    # Three parts: two whole ones of 128 MiB and the rest.
    assert stored.etag("big/target").endswith("-3")
    assert await driver.list("big") == ["target"]
    assert stored.pending_uploads() == []


@pytest.mark.parametrize(
    "record",
    [
        b"{not json",
        b'{"version":1,"size":0,"hash":"00ff","writer":"w","upload":null}\n',
        b'{"version":1,"size":0,"hash":"zz","writer":"w","upload":null}\n',
        b'{"version":1,"size":"x","upload":{"mode":"elsewhere"}}\n',
    ],
)
async def test_a_damaged_session_is_unavailable(first: Storage, record: bytes) -> None:
    session = await first.uploads.start(REPO)
    await first.driver.put_content(paths.upload_session(REPO, session.id), record)
    with pytest.raises(StorageUnavailable):
        await first.uploads.status(REPO, session.id)
    with pytest.raises(StorageUnavailable):
        await first.uploads.append(REPO, session.id, stream(b"more"))
    # It can still be cancelled.
    await first.uploads.cancel(REPO, session.id)
    with pytest.raises(BlobUploadUnknown):
        await first.uploads.status(REPO, session.id)

"""Concurrent writers and deleters, on both drivers, with no lock anywhere.

On the filesystem every driver call runs in a worker thread, and two driver
instances share one root (as two registry processes do), so these races are
real; the memory driver must end in the same states.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from registry_proxy.reference import Digest
from registry_proxy.storage import Storage, paths
from registry_proxy.storage.driver import FileNotFound, StorageDriver
from registry_proxy.storage.errors import BlobUploadUnknown, ManifestUnknown
from registry_proxy.storage.filesystem import TRASH, TRASH_GRACE_NS, FilesystemDriver
from registry_proxy.storage.s3 import S3Driver
from tests.storage.helpers import children, collect, push_image, stream

pytestmark = pytest.mark.anyio

ROUNDS = 20


@pytest.fixture
def twin(driver: StorageDriver, root: Path) -> StorageDriver:
    """A second driver over the same storage, as another process would have."""
    return FilesystemDriver(root) if isinstance(driver, FilesystemDriver) else driver


async def settle(calls: list[Awaitable[Any]]) -> list[Any]:
    return await asyncio.gather(*calls, return_exceptions=True)


def only(results: list[Any], *allowed: type[BaseException]) -> list[Any]:
    """`results`, after checking that every exception among them is of an `allowed` type."""
    unexpected = [r for r in results if isinstance(r, BaseException) and not isinstance(r, allowed)]
    assert not unexpected, unexpected
    return results


async def test_exactly_one_of_racing_deletes_wins(
    driver: StorageDriver, twin: StorageDriver
) -> None:
    for _ in range(ROUNDS):
        await driver.put_content("repo/tags/t/current/link", b"sha256:1")
        await driver.put_content("repo/tags/t/index/sha256/1/link", b"sha256:1")
        results = only(
            await settle([(driver, twin)[i % 2].delete("repo/tags/t") for i in range(8)]),
            FileNotFound,
        )
        if isinstance(driver, S3Driver):
            # S3 cannot pick one winner (no conditional deletes): at least one succeeds.
            assert sum(r is None for r in results) >= 1
        else:
            assert sum(r is None for r in results) == 1
        assert await children(driver, "repo/tags") == []


async def test_writes_racing_deletes_of_their_directory(
    driver: StorageDriver, twin: StorageDriver
) -> None:
    contents = [f"sha256:{i}".encode() for i in range(6)]
    for _ in range(ROUNDS):
        writes = [
            (driver, twin)[i % 2].put_content("repo/tags/t/current/link", data)
            for i, data in enumerate(contents)
        ]
        deletes = [(twin, driver)[i % 2].delete("repo/tags/t") for i in range(3)]
        results = await settle([*writes, *deletes])
        # A write whose directory vanished makes it again; it never fails.
        assert all(r is None for r in results[: len(writes)]), results
        only(results, FileNotFound)
        try:
            names = await driver.list("repo/tags/t/current")
        except FileNotFound:
            continue  # A delete came last.
        assert names == ["link"]  # No temporary file left behind.
        assert await driver.get_content("repo/tags/t/current/link") in contents
        await driver.delete("repo/tags/t")


async def test_appends_and_moves_racing_deletes(driver: StorageDriver, twin: StorageDriver) -> None:
    async def append(d: StorageDriver, data: bytes) -> None:
        writer = await d.open_append("up/session/data")
        try:
            await writer.write([data])
        finally:
            await writer.close()

    for round_ in range(ROUNDS):
        await driver.put_content(f"src/{round_}", b"moved")
        results = await settle(
            [
                append(driver, b"a"),
                twin.delete("up/session"),
                twin.move(f"src/{round_}", "up/session/moved"),
                append(twin, b"b"),
                driver.delete("up/session"),
            ]
        )
        assert results[0] is None and results[3] is None and results[2] is None, results
        only(results, FileNotFound)
        try:
            names = set(await driver.list("up/session"))
        except FileNotFound:
            continue
        assert names <= {"data", "moved"}
        if "moved" in names:
            assert await driver.get_content("up/session/moved") == b"moved"
        await driver.delete("up/session")


async def test_deleted_trees_are_in_no_listing(driver: StorageDriver, root: Path) -> None:
    await driver.put_content("docker/registry/v2/repositories/a/_layers/x/link", b"1")
    await driver.put_content("keep", b"1")
    await driver.delete("docker/registry/v2/repositories/a")
    # An emptied directory may be gone (on S3 it is).
    assert await driver.list("") in (["docker", "keep"], ["keep"])
    assert await children(driver, "docker/registry/v2/repositories") == []
    if isinstance(driver, FilesystemDriver):
        # Renamed away, then removed: nothing of it is left anywhere.
        assert os.listdir(root / TRASH) == []


async def test_trash_left_by_a_dead_process_is_swept(root: Path) -> None:
    driver = FilesystemDriver(root)
    stale = root / TRASH / f"{time.time_ns() - TRASH_GRACE_NS - 1}-dead"
    fresh = root / TRASH / f"{time.time_ns()}-busy"
    for leftover in (stale, fresh):
        (leftover / "sub").mkdir(parents=True)
        (leftover / "sub" / "file").write_bytes(b"x")
    await driver.put_content("tree/file", b"1")
    await driver.delete("tree")
    # A delete still under way elsewhere keeps its entry; a dead one's goes.
    assert os.listdir(root / TRASH) == [fresh.name]


async def test_tag_pushes_and_deletes_end_consistent(
    driver: StorageDriver, twin: StorageDriver
) -> None:
    storages = (Storage(driver), Storage(twin))
    body, digest, _ = await push_image(storages[0], "team/app", None)
    for _ in range(3 * ROUNDS):
        calls: list[Awaitable[Any]] = []
        for i in range(6):
            s = storages[i % 2]
            calls.append(s.manifests.put("team/app", "t", body, None))
            calls.append(s.manifests.delete_tag("team/app", "t"))
        calls.append(storages[0].manifests.delete("team/app", digest))
        calls.append(storages[1].manifests.delete("team/app", digest))
        only(await settle(calls), ManifestUnknown)
        await assert_tag_consistent(storages[0], "t", body)


async def assert_tag_consistent(storage: Storage, tag: str, body: bytes) -> None:
    """The tag is listed exactly when it resolves, and then to the pushed bytes."""
    listed = tag in await storage.tags.list("team/app")
    try:
        found = await storage.manifests.get("team/app", tag)
    except ManifestUnknown:
        assert not listed
        return
    assert listed
    assert found.body == body


async def test_commit_racing_a_cancel_stores_the_right_bytes_or_nothing(
    driver: StorageDriver, twin: StorageDriver
) -> None:
    # Two Storage objects: two processes, whose in-memory upload locks know nothing of each other.
    first, second = Storage(driver), Storage(twin)
    data = b"0123456789" * 1000
    digest = Digest.of(data)
    for _ in range(ROUNDS):
        session = await first.uploads.start("team/app")
        await first.uploads.append("team/app", session.id, stream(data))
        results = only(
            await settle(
                [
                    first.uploads.commit("team/app", session.id, digest),
                    second.uploads.cancel("team/app", session.id),
                ]
            ),
            BlobUploadUnknown,
        )
        stored = await first.blobs.stat(digest)
        if results[0] == len(data):
            assert stored == len(data)
        if stored is not None:
            assert await collect(first.blobs.open(digest)) == data
            await driver.delete(paths.blob_dir(digest))
        with pytest.raises(BlobUploadUnknown):
            await first.uploads.status("team/app", session.id)

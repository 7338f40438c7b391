"""Garbage collection: mark from every manifest revision, sweep the rest."""

from __future__ import annotations

import json

import pytest

from registry_proxy.reference import Digest
from registry_proxy.storage import Storage, paths
from registry_proxy.storage.driver import FileNotFound, StorageDriver
from registry_proxy.storage.errors import ManifestInvalid, ManifestUnknown
from registry_proxy.storage.gc import collect
from tests.storage.helpers import OCI_INDEX, OCI_MANIFEST, image_manifest, index_manifest, push_blob

pytestmark = pytest.mark.anyio

REPO = "team/app"


async def snapshot(driver: StorageDriver, path: str = "") -> dict[str, bytes]:
    """Every file under `path` with its content."""
    files: dict[str, bytes] = {}
    try:
        names = await driver.list(path)
    except FileNotFound:
        return files
    for name in names:
        child = f"{path}/{name}" if path else name
        if (await driver.stat(child)).is_dir:
            files.update(await snapshot(driver, child))
        else:
            files[child] = await driver.get_content(child, 1 << 30)
    return files


class World:
    """A tagged image, an untagged image, a tagged index over an untagged child,
    a referrer of the tagged image, and an orphan blob."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def build(self) -> World:
        s = self.storage
        self.shared = await push_blob(s, REPO, b"shared base layer")
        self.config = await push_blob(s, REPO, b'{"config":1}')
        self.tagged_layer = await push_blob(s, REPO, b"tagged only")
        self.untagged_layer = await push_blob(s, REPO, b"untagged only")
        self.child_layer = await push_blob(s, REPO, b"child only")
        self.orphan = await push_blob(s, REPO, b"nobody references me")

        self.tagged = await self.put(
            "v1", image_manifest(b'{"config":1}', [b"shared base layer", b"tagged only"])
        )
        self.untagged = await self.put(
            None, image_manifest(b'{"config":1}', [b"shared base layer", b"untagged only"])
        )
        child = image_manifest(b'{"config":1}', [b"child only"])
        self.child = await self.put(None, child)
        self.index = await self.put("multi", index_manifest([child]), OCI_INDEX)
        referrer = json.loads(image_manifest(b'{"config":1}', []))
        referrer["subject"] = {"mediaType": OCI_MANIFEST, "digest": str(self.tagged), "size": 1}
        self.referrer = await self.put(None, json.dumps(referrer).encode())
        return self

    async def put(self, tag: str | None, body: bytes, media_type: str = OCI_MANIFEST) -> Digest:
        digest = Digest.of(body)
        await self.storage.manifests.put(REPO, tag or str(digest), body, media_type)
        return digest

    def manifests(self) -> list[Digest]:
        return [self.tagged, self.untagged, self.child, self.index, self.referrer]


async def test_dry_run_changes_nothing(storage: Storage, driver: StorageDriver) -> None:
    world = await World(storage).build()
    before = await snapshot(driver)
    lines: list[str] = []
    report = await collect(storage, dry_run=True, delete_untagged=True, progress=lines.append)
    assert await snapshot(driver) == before
    assert report.manifests_deleted == 1  # the untagged image, not the child nor the referrer
    assert report.swept == 3  # its manifest blob, its own layer, the orphan
    assert report.bytes_freed == sum(
        [
            await storage.blobs.stat(d) or 0
            for d in (world.untagged, world.untagged_layer, world.orphan)
        ]
    )
    assert any(str(world.orphan) in line for line in lines)


async def test_sweep_removes_only_unreachable_blobs(storage: Storage) -> None:
    world = await World(storage).build()
    report = await collect(storage, dry_run=False, delete_untagged=False)
    assert (report.swept, report.manifests_deleted) == (1, 0)
    assert report.bytes_freed == len(b"nobody references me")
    assert await storage.blobs.stat(world.orphan) is None
    for digest in world.manifests():
        assert await storage.manifests.exists(REPO, digest)
    kept = [world.shared, world.config, world.tagged_layer, world.untagged_layer, world.child_layer]
    for digest in kept:
        assert await storage.blobs.linked(REPO, digest) is not None
    assert (await storage.manifests.get(REPO, "multi")).digest == world.index
    # Nothing more to do the second time.
    again = await collect(storage, dry_run=False, delete_untagged=False)
    assert (again.swept, again.bytes_freed) == (0, 0)


async def test_delete_untagged(storage: Storage) -> None:
    world = await World(storage).build()
    report = await collect(storage, dry_run=False, delete_untagged=True)
    assert report.manifests_deleted == 1
    assert report.swept == 3
    assert not await storage.manifests.exists(REPO, world.untagged)
    with pytest.raises(ManifestUnknown):
        await storage.manifests.get(REPO, str(world.untagged))
    for digest in (world.tagged, world.child, world.index, world.referrer):
        assert await storage.manifests.exists(REPO, digest)
    assert await storage.blobs.stat(world.untagged_layer) is None
    assert await storage.blobs.stat(world.shared) is not None
    assert await storage.blobs.stat(world.child_layer) is not None
    assert [d["digest"] for d in await storage.referrers.list(REPO, world.tagged)] == [
        str(world.referrer)
    ]


async def test_blobs_referenced_from_another_repository_stay(storage: Storage) -> None:
    layer = await push_blob(storage, "one/repo", b"used elsewhere")
    await storage.blobs.link("two/repo", layer)
    await push_blob(storage, "two/repo", b"{}")
    await storage.manifests.put("two/repo", "v1", image_manifest(b"{}", [b"used elsewhere"]), None)
    report = await collect(storage, dry_run=False, delete_untagged=True)
    assert report.swept == 0
    assert await storage.blobs.linked("one/repo", layer) is not None


async def test_an_unreadable_manifest_stops_the_collection(storage: Storage) -> None:
    world = await World(storage).build()
    await storage.driver.put_content(paths.blob_data(world.child), b"{ corrupt")
    before = await snapshot(storage.driver)
    with pytest.raises(ManifestInvalid):
        await collect(storage, dry_run=False, delete_untagged=True)
    assert await snapshot(storage.driver) == before


async def test_empty_storage(storage: Storage) -> None:
    report = await collect(storage, dry_run=False, delete_untagged=True)
    assert (report.marked, report.swept, report.bytes_freed, report.manifests_deleted) == (
        0,
        0,
        0,
        0,
    )

"""The repository catalog: order, pagination, empty registries and listing errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry_proxy.storage import Storage
from registry_proxy.storage.driver import StorageDriver
from registry_proxy.storage.errors import StorageUnavailable
from registry_proxy.storage.filesystem import FilesystemDriver
from registry_proxy.storage.memory import MemoryDriver
from tests.storage.helpers import push_blob

pytestmark = pytest.mark.anyio

# Component-wise order: '/' sorts before every other character.
ORDERED = ["a", "a/b", "a/b/c", "a-b", "a.b", "a0", "a_b", "b", "ns/x", "z/0"]


@pytest.fixture
async def populated(storage: Storage) -> Storage:
    for name in reversed(ORDERED):
        await push_blob(storage, name, b"layer")
    # Neither an upload nor a namespace directory makes a repository.
    await storage.uploads.start("uploading/only")
    return storage


async def test_empty_registry(storage: Storage) -> None:
    assert await storage.catalog.list(None, None) == ([], False)
    assert await storage.catalog.list(10, "a") == ([], False)


async def test_order(populated: Storage) -> None:
    assert await populated.catalog.list(None, None) == (ORDERED, False)


async def test_pagination(populated: Storage) -> None:
    pages: list[list[str]] = []
    last = None
    while True:
        names, more = await populated.catalog.list(3, last)
        pages.append(names)
        if not more:
            break
        last = names[-1]
    assert pages == [ORDERED[0:3], ORDERED[3:6], ORDERED[6:9], ORDERED[9:]]
    assert await populated.catalog.list(len(ORDERED), None) == (ORDERED, False)
    assert await populated.catalog.list(len(ORDERED) - 1, None) == (ORDERED[:-1], True)
    assert await populated.catalog.list(0, None) == ([], False)


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        ("a", ORDERED[1:]),
        ("a/b", ORDERED[2:]),
        ("a/a", ORDERED[1:]),  # need not exist
        ("a/z", ORDERED[3:]),
        ("a-a", ORDERED[3:]),
        ("a_b", ORDERED[7:]),
        ("ns", ORDERED[8:]),
        ("z/0", []),
        ("zz", []),
        ("0", ORDERED),
    ],
)
async def test_resume_strictly_after_last(
    populated: Storage, last: str, expected: list[str]
) -> None:
    assert await populated.catalog.list(None, last) == (expected, False)


class FailingList(MemoryDriver):
    async def list(self, path: str) -> list[str]:
        if path.endswith("/ns"):
            raise StorageUnavailable("disk on fire")
        return await super().list(path)


async def test_listing_error_is_not_an_empty_page() -> None:
    storage = Storage(FailingList())
    for name in ORDERED:
        await push_blob(storage, name, b"layer")
    with pytest.raises(StorageUnavailable):
        await storage.catalog.list(None, None)
    # A page that ends before the broken directory is still served.
    assert await storage.catalog.list(2, None) == (ORDERED[:2], True)


async def test_filesystem_listing_error(root: Path) -> None:
    storage = Storage(FilesystemDriver(root))
    await push_blob(storage, "fine", b"layer")
    repositories = root / "docker/registry/v2/repositories"
    (repositories / "loop").symlink_to("loop")
    with pytest.raises(StorageUnavailable):
        await storage.catalog.list(None, None)


async def test_tags_list_unknown_vs_empty(storage: Storage, driver: StorageDriver) -> None:
    await push_blob(storage, "has/blobs", b"layer")
    assert await storage.tags.list("has/blobs") == []

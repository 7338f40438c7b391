"""One suite for every driver (like the Go project's driver testsuites)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from registry_proxy.storage.driver import FileNotFound, StorageDriver, TooLarge
from registry_proxy.storage.errors import PathInvalid, StorageUnavailable
from registry_proxy.storage.filesystem import FilesystemDriver
from tests.storage.helpers import children

pytestmark = pytest.mark.anyio


async def read_all(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


async def test_content_round_trip(driver: StorageDriver) -> None:
    data = bytes(range(256)) * 10
    await driver.put_content("a/b/c", data)
    assert await driver.get_content("a/b/c") == data
    await driver.put_content("a/empty", b"")
    assert await driver.get_content("a/empty") == b""


async def test_put_content_replaces(driver: StorageDriver) -> None:
    await driver.put_content("dir/file", b"old content, longer")
    await driver.put_content("dir/file", b"new")
    assert await driver.get_content("dir/file") == b"new"
    assert await driver.list("dir") == ["file"]  # no temporary files left behind


async def test_get_content_limits(driver: StorageDriver) -> None:
    await driver.put_content("big", b"x" * 101)
    assert await driver.get_content("big", max_size=101) == b"x" * 101
    with pytest.raises(TooLarge):
        await driver.get_content("big", max_size=100)
    with pytest.raises(FileNotFound):
        await driver.get_content("missing")
    with pytest.raises(FileNotFound):
        await driver.get_content("big/below-a-file")


async def test_get_content_of_a_directory_is_not_found(driver: StorageDriver) -> None:
    await driver.put_content("d/f", b"1")
    with pytest.raises(FileNotFound):
        await driver.get_content("d")


async def test_failed_put_keeps_the_old_content(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = FilesystemDriver(root)
    await driver.put_content("x/link", b"sha256:old")

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(StorageUnavailable):
        await driver.put_content("x/link", b"sha256:new")
    monkeypatch.undo()
    assert await driver.get_content("x/link") == b"sha256:old"
    assert os.listdir(root / "x") == ["link"]


async def test_reader_ranges(driver: StorageDriver) -> None:
    data = bytes(range(256)) * 40  # 10240 bytes
    await driver.put_content("blob", data)
    assert b"".join(await read_all(driver.reader("blob"))) == data
    chunks = await read_all(driver.reader("blob", chunk_size=4096))
    assert [len(c) for c in chunks] == [4096, 4096, 2048]
    assert b"".join(await read_all(driver.reader("blob", offset=100, length=50))) == data[100:150]
    assert b"".join(await read_all(driver.reader("blob", offset=10000))) == data[10000:]
    assert (
        b"".join(await read_all(driver.reader("blob", offset=10200, length=1000))) == data[10200:]
    )
    assert await read_all(driver.reader("blob", offset=20000)) == []
    assert await read_all(driver.reader("blob", offset=5, length=0)) == []
    with pytest.raises(FileNotFound):
        await read_all(driver.reader("missing"))


async def test_reader_stops_early(driver: StorageDriver) -> None:
    await driver.put_content("blob", b"y" * 3000)
    chunks = driver.reader("blob", chunk_size=1000)
    assert await anext(chunks) == b"y" * 1000
    # Closed while a store may still be reading ahead: nothing is left broken.
    await chunks.aclose()
    assert b"".join(await read_all(driver.reader("blob", chunk_size=1000))) == b"y" * 3000


async def test_list(driver: StorageDriver) -> None:
    for path in ("top/b/file", "top/a", "top/c/d/e", "other"):
        await driver.put_content(path, b"1")
    assert await driver.list("top") == ["a", "b", "c"]
    assert await driver.list("top/c") == ["d"]
    assert await driver.list("") == ["other", "top"]
    with pytest.raises(FileNotFound):
        await driver.list("nope")
    with pytest.raises(FileNotFound):
        await driver.list("top/a")  # a file is not a directory


async def test_stat(driver: StorageDriver) -> None:
    await driver.put_content("d/f", b"12345")
    info = await driver.stat("d/f")
    assert (info.size, info.is_dir) == (5, False)
    assert info.modified.tzinfo is not None
    assert (await driver.stat("d")).is_dir
    assert (await driver.stat("")).is_dir
    with pytest.raises(FileNotFound):
        await driver.stat("d/missing")


async def test_move(driver: StorageDriver) -> None:
    await driver.put_content("src/file", b"moved")
    await driver.put_content("dst/existing", b"replaced")
    await driver.move("src/file", "new/parent/file")
    assert await driver.get_content("new/parent/file") == b"moved"
    with pytest.raises(FileNotFound):
        await driver.stat("src/file")
    await driver.put_content("src/file", b"again")
    await driver.move("src/file", "dst/existing")
    assert await driver.get_content("dst/existing") == b"again"
    with pytest.raises(FileNotFound):
        await driver.move("src/file", "dst/other")
    with pytest.raises(FileNotFound):
        await driver.stat("dst/other")


async def test_move_directory(driver: StorageDriver) -> None:
    await driver.put_content("session/data", b"abc")
    await driver.put_content("session/startedat", b"t")
    await driver.move("session", "moved/session")
    assert await driver.list("moved/session") == ["data", "startedat"]


async def test_delete(driver: StorageDriver) -> None:
    await driver.put_content("tree/a/b", b"1")
    await driver.put_content("tree/a/c", b"2")
    await driver.put_content("tree/d", b"3")
    await driver.delete("tree/d")
    assert await driver.list("tree") == ["a"]
    await driver.delete("tree/a")
    assert await children(driver, "tree") == []
    with pytest.raises(FileNotFound):
        await driver.delete("tree/a")


async def test_append(driver: StorageDriver) -> None:
    writer = await driver.open_append("up/data")
    assert writer.size == 0
    await writer.write([b"hello "])
    await writer.write([b"world"])
    assert writer.size == 11
    await writer.close()
    writer = await driver.open_append("up/data")
    assert writer.size == 11
    await writer.write([b"!"])
    await writer.close(sync=True)
    assert await driver.get_content("up/data") == b"hello world!"


async def test_append_feeds_each_piece_in_order(driver: StorageDriver) -> None:
    fed: list[bytes] = []
    writer = await driver.open_append("up/data")
    try:
        pieces = [b"one ", bytes(70_000), b"", b"three"]
        await writer.write(pieces, fed.append)
        assert writer.size == sum(len(p) for p in pieces)
        with pytest.raises(TypeError):
            await writer.write(b"one buffer")  # type: ignore[arg-type]
        assert writer.size == sum(len(p) for p in pieces)
    finally:
        await writer.close()
    assert fed == pieces
    assert await driver.get_content("up/data", 1 << 20) == b"".join(pieces)


async def test_a_cancelled_append_lands_whole_before_the_close(driver: StorageDriver) -> None:
    # The request that wrote went away; the close must not cut its write short
    # (nor close the file under it): the batch is there in full or not at all.
    pieces = [bytes([i]) * 256 * 1024 for i in range(16)]
    writer = await driver.open_append("up/data")
    writing = asyncio.create_task(writer.write(pieces))
    await asyncio.sleep(0)
    writing.cancel()
    await asyncio.gather(writing, return_exceptions=True)
    await writer.close()
    stored = await driver.get_content("up/data", 8 << 20)
    assert stored in (b"", b"".join(pieces))


BAD_PATHS = [
    "..",
    "../escape",
    "a/../../escape",
    "a/..",
    "./a",
    "a/./b",
    "/etc/passwd",
    "/",
    "a//b",
    "a/",
    "",
    "a\\..\\..\\escape",
    "..\\escape",
    "a\x00b",
]


def operations(driver: StorageDriver, path: str) -> list[Callable[[], Awaitable[object]]]:
    async def reader() -> object:
        return await read_all(driver.reader(path))

    async def append() -> object:
        return (await driver.open_append(path)).size

    return [
        lambda: driver.get_content(path),
        lambda: driver.put_content(path, b"pwned"),
        reader,
        lambda: driver.move("safe/file", path),
        lambda: driver.move(path, "safe/other"),
        lambda: driver.delete(path),
        append,
    ]


@pytest.mark.parametrize("path", BAD_PATHS)
async def test_paths_that_could_escape_are_refused(
    driver: StorageDriver, root: Path, path: str
) -> None:
    root.parent.joinpath("outside").mkdir(exist_ok=True)
    await driver.put_content("safe/file", b"1")
    for operation in operations(driver, path):
        with pytest.raises(PathInvalid):
            await operation()
    if path:  # the empty path is the root, which only stat and list accept
        with pytest.raises(PathInvalid):
            await driver.stat(path)
        with pytest.raises(PathInvalid):
            await driver.list(path)
    # Nothing was created or removed outside the root, nor inside it.
    assert {p.name for p in root.parent.iterdir()} <= {"outside", "root"}
    assert not any(root.parent.joinpath("outside").iterdir())
    assert not root.parent.joinpath("escape").exists()
    assert await driver.get_content("safe/file") == b"1"
    assert await driver.list("safe") == ["file"]


async def test_encoded_dots_are_just_a_name(driver: StorageDriver, root: Path) -> None:
    await driver.put_content("%2e%2e/x", b"literal")
    await driver.put_content("...", b"three dots")
    assert await driver.get_content("%2e%2e/x") == b"literal"
    assert await driver.list("") == ["%2e%2e", "..."]
    if isinstance(driver, FilesystemDriver):
        assert (root / "%2e%2e" / "x").read_bytes() == b"literal"
        assert sorted(p.name for p in root.parent.iterdir()) == ["root"]


async def test_unexpected_os_errors_are_unavailable(root: Path) -> None:
    driver = FilesystemDriver(root)
    await driver.put_content("dir/file", b"1")
    (root / "loop").symlink_to("loop")  # ELOOP: an I/O error that is not "not found"
    for operation in (driver.list, driver.stat, driver.get_content):
        with pytest.raises(StorageUnavailable):
            await operation("loop")

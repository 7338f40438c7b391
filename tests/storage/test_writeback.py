"""Early writeback of appended files: the kernel call itself, one request at a time, never an
error of its own, and the appender asking for every stretch it wrote, once, bytes intact."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from registry_proxy.storage import filesystem, writeback
from registry_proxy.storage.filesystem import FilesystemDriver

MiB = 1024 * 1024


@pytest.fixture
def disk_dir() -> Iterator[Path]:
    # On a disk, not a tmpfs /tmp: writeback there is real.
    with tempfile.TemporaryDirectory(dir="/var/tmp") as name:
        yield Path(name)


def test_the_kernel_call_is_bound_on_linux_and_answers_as_documented(disk_dir: Path) -> None:
    if not sys.platform.startswith("linux"):
        assert not writeback.available()
        return
    assert writeback.available()
    call = writeback._SYNC_FILE_RANGE
    assert call is not None
    path = disk_dir / "f"
    path.write_bytes(os.urandom(MiB))
    fd = os.open(path, os.O_WRONLY)
    try:
        assert call(fd, 0, MiB, writeback._SYNC_FILE_RANGE_WRITE) == 0
    finally:
        os.close(fd)
    # Wrong arguments are the kernel's errors, not a crash: the types are bound right.
    assert call(-1, 0, MiB, writeback._SYNC_FILE_RANGE_WRITE) == -1
    assert ctypes.get_errno() == errno.EBADF


def test_a_request_works_on_a_duplicate_so_the_file_may_close_at_once(disk_dir: Path) -> None:
    path = disk_dir / "f"
    data = os.urandom(4 * MiB)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, data)
    requests = writeback.Writeback()
    assert requests.start(fd, 0, len(data))
    os.close(fd)
    running = requests._running
    if running is not None:
        running.join(10)
        assert not running.is_alive()
    assert path.read_bytes() == data
    # Its duplicate is closed too: no descriptor left open on the file.
    own = {os.path.realpath(f"/proc/self/fd/{n}") for n in os.listdir("/proc/self/fd")}
    assert str(path) not in own


def test_one_request_at_a_time_and_none_ever_raises(disk_dir: Path) -> None:
    requests = writeback.Writeback()
    # A bad descriptor: the duplicate fails, and that is only a lost head start.
    assert requests.start(-1, 0, MiB)
    assert requests.start(12345, 0, MiB)
    assert requests.start(0, 0, 0)  # nothing to ask for
    fd = os.open(disk_dir / "g", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"x" * MiB)
        stuck = writeback.Writeback()
        busy = _Busy()
        stuck._running = busy  # type: ignore[assignment]
        assert not stuck.start(fd, 0, MiB)  # still at the previous one: ask again later
        busy.done = True
        assert stuck.start(fd, 0, MiB)
    finally:
        os.close(fd)


class _Busy:
    def __init__(self) -> None:
        self.done = False

    def is_alive(self) -> bool:
        return not self.done


class _Recorded(writeback.Writeback):
    """The real requests, each recorded; every `refuse_every`-th call answers "still busy"."""

    asked: ClassVar[list[tuple[int, int]]] = []
    calls = 0
    refuse_every = 0

    def start(self, fd: int, offset: int, length: int) -> bool:
        _Recorded.calls += 1
        if self.refuse_every and _Recorded.calls % self.refuse_every == 0:
            return False
        _Recorded.asked.append((offset, length))
        return super().start(fd, offset, length)


@pytest.mark.anyio
@pytest.mark.parametrize("refuse_every", [0, 2])
async def test_the_appender_asks_for_each_stretch_once_and_keeps_every_byte(
    disk_dir: Path, monkeypatch: pytest.MonkeyPatch, refuse_every: int
) -> None:
    _Recorded.asked, _Recorded.calls, _Recorded.refuse_every = [], 0, refuse_every
    monkeypatch.setattr(filesystem.writeback, "Writeback", _Recorded)
    driver = FilesystemDriver(disk_dir / "root")
    expected = hashlib.sha256()
    sizes = []
    # Odd-sized pieces in two sessions of appending, each longer than AHEAD.
    for session in range(2):
        appender = await driver.open_append("docker/registry/v2/blob")
        for n in range(40):
            pieces = [os.urandom(MiB + n), os.urandom(1 + n + session)]
            for piece in pieces:
                expected.update(piece)
            await appender.write(pieces)
        sizes.append(appender.size)
        await appender.close(sync=True)
    stored = (disk_dir / "root/docker/registry/v2/blob").read_bytes()
    assert len(stored) == sizes[-1]
    assert hashlib.sha256(stored).hexdigest() == expected.hexdigest()
    # One request per session here; each starts where its session's unrequested
    # bytes start (a refused call leaves its stretch to the next, which is longer),
    # covers at least AHEAD bytes, and ends inside what was written by then.
    asked = _Recorded.asked
    assert [offset for offset, _ in asked] == [0, sizes[0]]
    for (offset, length), end in zip(asked, sizes, strict=True):
        assert length >= writeback.AHEAD and offset + length <= end
    if refuse_every:
        assert asked[1][1] > asked[0][1]  # the refused second call's stretch grew

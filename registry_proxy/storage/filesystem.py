"""A storage driver over a local directory, laid out exactly like the Go registry's.

Several registry processes may share one root, so every operation is safe
against the others without any lock:

- a directory is deleted by renaming it, atomically, to a unique name in
  `_trash/` at the root (which no listing of ours or the Go registry's walks)
  and only then removing it, so exactly one of several racing deletes wins and
  a writer never sees a half-removed tree;
- a writer whose directory was deleted under it makes it again and retries,
  a bounded number of times (it then simply happened after the delete).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import os
import shutil
import stat as stat_mode
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from registry_proxy.storage import writeback
from registry_proxy.storage.driver import (
    CHUNK_SIZE,
    MAX_CONTENT_SIZE,
    Feed,
    FileInfo,
    FileNotFound,
    TooLarge,
    split_path,
)
from registry_proxy.storage.errors import StorageUnavailable

__all__ = ["TRASH", "FilesystemDriver"]

# At the root, beside docker/: outside every path the Go registry or we walk.
TRASH = "_trash"
# A writer retries this often when a directory on its path keeps being deleted.
RETRIES = 16
# Trash entries older than this were left by a process that died mid-delete.
TRASH_GRACE_NS = 600 * 10**9


@contextlib.contextmanager
def _os_errors(path: str) -> Iterator[None]:
    """Not-found conditions become `FileNotFound`; every other OS error `StorageUnavailable`."""
    try:
        yield
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise FileNotFound(path) from None
    except OSError as exc:
        raise StorageUnavailable(f"{path}: {exc.strerror or exc}") from exc


class _FileAppender:
    """Appends through the file descriptor itself: no buffer of Python's in between.

    Each `write` is one worker-thread call that writes the pieces and feeds
    them, one at a time while each is still in the CPU's cache, and every
    `writeback.AHEAD` bytes asks the kernel to start writing them to disk. The lock
    makes `close` wait for a write still running in its thread (one whose
    request was cancelled meanwhile), so a descriptor is never closed, and
    perhaps reused, under a write.
    """

    def __init__(self, fd: int, path: str, size: int) -> None:
        self._fd: int | None = fd
        self._path = path
        self._size = size
        self._lock = threading.Lock()
        # Where the file ends, and from where its pages were not yet sent
        # for writeback (see `writeback`); both only under the lock.
        self._end = size
        self._writeback_from = size
        self._writeback = writeback.Writeback()

    @property
    def size(self) -> int:
        return self._size

    async def write(self, pieces: Sequence[bytes], feed: Feed | None = None) -> None:
        if isinstance(pieces, bytes | bytearray | memoryview):
            raise TypeError("write takes a sequence of pieces, not one buffer")
        with _os_errors(self._path):
            written = await asyncio.to_thread(self._write, pieces, feed)
        self._size += written

    def _write(self, pieces: Sequence[bytes], feed: Feed | None) -> int:
        written = 0
        with self._lock:
            if self._fd is None:
                raise ValueError(f"{self._path}: written after close")
            for piece in pieces:
                view = memoryview(piece)
                while view:  # a regular file takes less only when something is wrong
                    view = view[os.write(self._fd, view) :]
                if feed is not None:
                    feed(piece)
                written += len(piece)
            self._end += written
            if self._end - self._writeback_from >= writeback.AHEAD and self._writeback.start(
                self._fd, self._writeback_from, self._end - self._writeback_from
            ):
                self._writeback_from = self._end
        return written

    async def close(self, *, sync: bool = False) -> None:
        with _os_errors(self._path):
            await asyncio.to_thread(self._close, sync)

    def _close(self, sync: bool) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is None:
                return
            try:
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)


class FilesystemDriver:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()
        self._root_name = str(self.root)
        self._trash = self.root / TRASH

    def _full(self, path: str, *, allow_root: bool = False) -> Path:
        return self.root.joinpath(*split_path(path, allow_root=allow_root))

    def _name(self, path: str, *, allow_root: bool = False) -> str:
        # `_full` as a string, for the paths every HEAD and GET takes (pathlib costs
        # more than the system calls there). `split_path` refused anything that
        # is not plain components, so joining with "/" is exact.
        split_path(path, allow_root=allow_root)
        return f"{self._root_name}/{path}" if path else self._root_name

    async def get_content(self, path: str, max_size: int = MAX_CONTENT_SIZE) -> bytes:
        full = self._name(path)
        with _os_errors(path):
            if max_size <= INLINE_READ_LIMIT:
                data = _read_small(full, max_size)
            else:
                data = await asyncio.to_thread(_read_small, full, max_size)
        if data is None:
            raise TooLarge(path, max_size)
        return data

    async def put_content(self, path: str, data: bytes) -> None:
        full = self._full(path)
        with _os_errors(path):
            await asyncio.to_thread(_replace_atomically, full, data, path)

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> AsyncGenerator[bytes, None]:
        full = self._full(path)
        with _os_errors(path):
            file = await asyncio.to_thread(_open_at, full, offset)
        try:
            remaining = length
            while remaining is None or remaining > 0:
                size = chunk_size if remaining is None else min(chunk_size, remaining)
                with _os_errors(path):
                    data = await asyncio.to_thread(file.read, size)
                if not data:
                    return
                if remaining is not None:
                    remaining -= len(data)
                yield data
        finally:
            file.close()

    async def stat(self, path: str) -> FileInfo:
        full = self._name(path, allow_root=True)
        with _os_errors(path):
            st = os.stat(full)
        is_dir = stat_mode.S_ISDIR(st.st_mode)
        return FileInfo(
            path=path,
            size=0 if is_dir else st.st_size,
            modified=dt.datetime.fromtimestamp(st.st_mtime, dt.UTC),
            is_dir=is_dir,
        )

    async def list(self, path: str) -> list[str]:
        full = self._full(path, allow_root=True)
        with _os_errors(path):
            names = await asyncio.to_thread(os.listdir, full)
        if full == self.root:
            names = [name for name in names if name != TRASH]
        return sorted(names)

    async def move(self, src: str, dst: str) -> None:
        source, target = self._full(src), self._full(dst)
        with _os_errors(src):
            await asyncio.to_thread(_move, source, target, src)

    async def delete(self, path: str) -> None:
        full = self._full(path)
        with _os_errors(path):
            await asyncio.to_thread(_remove, full, self._trash)

    async def redirect_url(self, path: str, expires_in: int) -> str | None:
        return None  # only the registry can serve these bytes

    async def open_append(self, path: str) -> _FileAppender:
        full = self._full(path)
        with _os_errors(path):
            fd, size = await asyncio.to_thread(_open_append, full, path)
        return _FileAppender(fd, path, size)


# Link files and stats are a few syscalls on a local disk: a thread hop would
# cost more than the work (and halves HEAD throughput), so they run inline.
INLINE_READ_LIMIT = 64 * 1024


def _read_small(full: str, max_size: int) -> bytes | None:
    # The descriptor itself, without a file object: three system calls and no more.
    fd = os.open(full, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if stat_mode.S_ISDIR(st.st_mode):
            raise IsADirectoryError(full)
        if st.st_size > max_size:
            return None
        data = os.read(fd, max_size + 1)
        while len(data) < st.st_size:  # a short read, as some filesystems give
            more = os.read(fd, max_size + 1 - len(data))
            if not more:
                break
            data += more
    finally:
        os.close(fd)
    return None if len(data) > max_size else data


# What a directory deleted mid-operation looks like: gone when used, or seen by
# mkdir as existing and then found gone (Path.mkdir's exist_ok check).
_VANISHED = (FileNotFoundError, FileExistsError)


def _vanishing(path: str) -> StorageUnavailable:
    return StorageUnavailable(f"{path}: its directory was deleted {RETRIES} times while writing")


def _replace_atomically(full: Path, data: bytes, path: str) -> None:
    for _attempt in range(RETRIES):
        try:
            full.parent.mkdir(parents=True, exist_ok=True)
            _write_then_rename(full, data)
        except _VANISHED:
            continue
        return
    raise _vanishing(path)


def _write_then_rename(full: Path, data: bytes) -> None:
    # A dot-name in the same directory: same filesystem for the rename, and
    # never a name the Go registry or our listings look for.
    temp = full.with_name(f".{full.name}.{uuid.uuid4().hex}.tmp")
    try:
        with temp.open("xb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, full)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _open_at(full: Path, offset: int) -> BinaryIO:
    file = full.open("rb")
    try:
        if stat_mode.S_ISDIR(os.fstat(file.fileno()).st_mode):
            raise IsADirectoryError(str(full))
        file.seek(offset)
    except BaseException:
        file.close()
        raise
    return file


def _move(source: Path, target: Path, path: str) -> None:
    for _attempt in range(RETRIES):
        if not source.exists():
            raise FileNotFoundError(str(source))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
        except _VANISHED:
            continue  # Either side vanished; the next round tells which.
        return
    raise _vanishing(path)


def _remove(full: Path, trash: Path) -> None:
    st = full.lstat()
    if not stat_mode.S_ISDIR(st.st_mode):
        full.unlink()
        return
    doomed = _to_trash(full, trash)
    if doomed is None:
        # A subtree mounted apart from the root: no atomic way out, remove it in place.
        shutil.rmtree(full)
        return
    # Nobody new finds this name, but a writer whose path lookup passed
    # through the directory just before the rename can still create an entry
    # in it: remove again what such a late arrival left, so the trash only
    # ever keeps what a process that died mid-delete left.
    for _attempt in range(RETRIES):
        shutil.rmtree(doomed, ignore_errors=True)
        if not os.path.lexists(doomed):
            break
    _sweep_trash(trash)


def _to_trash(full: Path, trash: Path) -> Path | None:
    """Rename `full` into the trash (None if it is on another filesystem than the trash).

    `FileNotFoundError` if another delete got it first.
    """
    for _attempt in range(RETRIES):
        trash.mkdir(exist_ok=True)
        doomed = trash / f"{time.time_ns()}-{uuid.uuid4().hex}"
        try:
            os.rename(full, doomed)
        except FileNotFoundError:
            if os.path.lexists(full):
                continue  # The trash itself vanished; make it again.
            raise
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                return None
            raise
        return doomed
    raise StorageUnavailable(f"{trash}: keeps vanishing")


def _sweep_trash(trash: Path) -> None:
    """Remove what a process that died mid-delete left in the trash."""
    try:
        names = os.listdir(trash)
    except FileNotFoundError:
        return
    cutoff = time.time_ns() - TRASH_GRACE_NS
    for name in names:
        stamp, _, _ = name.partition("-")
        if stamp.isascii() and stamp.isdigit() and len(stamp) < 25 and int(stamp) < cutoff:
            shutil.rmtree(trash / name, ignore_errors=True)


def _open_append(full: Path, path: str) -> tuple[int, int]:
    for _attempt in range(RETRIES):
        try:
            full.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(full, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except _VANISHED:
            continue
        try:
            return fd, os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            raise
    raise _vanishing(path)

"""Start writing a file's dirty pages to disk early, without waiting and without hiding errors.

A blob is made durable (fsync) before it is stored under its digest, so an
upload's commit waits until the disk holds every byte; left to the kernel,
the whole blob is still in the page cache at that point (half a second for
1 GiB on the development machine). Asking for writeback as the data arrives
lets the disk work while the body is still being received, and the fsync then
waits for the last stretch only.

Linux's `sync_file_range(SYNC_FILE_RANGE_WRITE)` does exactly that: it
queues the range for writing and returns. Unlike an early `fdatasync` it
does not consume a write error, so the commit's fsync still reports one.
`os` has no binding for it; elsewhere (or without it in the C library)
`Writeback.start` does nothing and the fsync at commit does all the work, as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from collections.abc import Callable

__all__ = ["AHEAD", "Writeback", "available"]

# Bytes written between two requests for writeback: large enough that the
# disk gets long runs, small enough that the commit waits for little.
AHEAD = 32 * 1024 * 1024
_SYNC_FILE_RANGE_WRITE = 2


def _load() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


_SYNC_FILE_RANGE = _load()


def available() -> bool:
    return _SYNC_FILE_RANGE is not None


class Writeback:
    """Requests for one file: queued by a thread of their own, one at a time.

    Queueing takes the kernel some work (it walks and submits the pages),
    which would otherwise hold up the writer's next write. The thread works
    on a duplicate of the descriptor, so the file may be closed meanwhile.
    """

    def __init__(self) -> None:
        self._running: threading.Thread | None = None

    def start(self, fd: int, offset: int, length: int) -> bool:
        """Have `length` bytes of `fd` from `offset` queued for writing to disk.

        False while the previous request is still being queued: the caller
        asks again later, for the longer range. Never raises: a failure costs
        only the head start, and the fsync at commit writes and reports it.
        """
        if _SYNC_FILE_RANGE is None or length <= 0:
            return True
        if self._running is not None and self._running.is_alive():
            return False
        try:
            duplicate = os.dup(fd)
        except OSError:
            return True
        thread = threading.Thread(
            target=_queue, args=(duplicate, offset, length), name="writeback", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:
            os.close(duplicate)
            return True
        self._running = thread
        return True


def _queue(fd: int, offset: int, length: int) -> None:
    assert _SYNC_FILE_RANGE is not None
    try:
        _SYNC_FILE_RANGE(fd, offset, length, _SYNC_FILE_RANGE_WRITE)
    finally:
        os.close(fd)

"""The async storage driver protocol, its value types, and the path rules every driver enforces.

Driver paths are '/'-separated and relative to the driver's root. A path that
could name anything outside the root is refused with `PathInvalid` before any
I/O happens, by every driver, through `split_path`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from registry_proxy.storage.errors import PathInvalid

__all__ = [
    "CHUNK_SIZE",
    "MAX_CONTENT_SIZE",
    "AppendWriter",
    "DriverError",
    "Feed",
    "FileInfo",
    "FileNotFound",
    "MultipartStore",
    "StorageDriver",
    "TooLarge",
    "split_path",
]

MAX_CONTENT_SIZE = 4 * 1024 * 1024
CHUNK_SIZE = 1024 * 1024


class DriverError(Exception):
    """Base of the driver-level conditions the storage layer translates; never shown to clients."""


class FileNotFound(DriverError):
    def __init__(self, path: str) -> None:
        super().__init__(f"not found: {path}")
        self.path = path


class TooLarge(DriverError):
    def __init__(self, path: str, limit: int) -> None:
        super().__init__(f"larger than {limit} bytes: {path}")
        self.path = path
        self.limit = limit


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    size: int
    modified: dt.datetime
    is_dir: bool


def split_path(path: str, *, allow_root: bool = False) -> list[str]:
    """The components of a driver path, or `PathInvalid` if it could leave the root.

    The empty path names the root itself and is only accepted where `allow_root`.
    """
    if not isinstance(path, str):
        raise PathInvalid("path must be a string")
    if path == "":
        if allow_root:
            return []
        raise PathInvalid("empty path")
    if "\x00" in path or "\\" in path:
        raise PathInvalid("path contains NUL or backslash")
    if path.startswith("/"):
        raise PathInvalid("absolute path")
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise PathInvalid("empty, '.' or '..' path component")
    return parts


# What a writer feeds each piece to after writing it (a hasher's `update`).
Feed = Callable[[bytes], object]


class AppendWriter(Protocol):
    """Appends to one file; the caller batches, so every `write` goes to the backend."""

    @property
    def size(self) -> int:
        """The file's size including everything written so far."""
        ...

    async def write(self, pieces: Sequence[bytes], feed: Feed | None = None) -> None:
        """Append `pieces` in order, in one call to the backend (one worker-thread hop
        for a file), feeding each to `feed` there too once it is written.

        The pieces are the caller's own objects, never copied or kept after the call.
        """
        ...

    async def close(self, *, sync: bool = False) -> None:
        """Release the file; with `sync`, make what was written durable first."""
        ...


class StorageDriver(Protocol):
    """What the storage layer needs from a backend; see `filesystem` and `memory`.

    Errors: `FileNotFound`, `TooLarge`, `PathInvalid`, and `StorageUnavailable`
    for any other backend failure (never an empty result in its place).
    """

    async def get_content(self, path: str, max_size: int = MAX_CONTENT_SIZE) -> bytes: ...

    async def put_content(self, path: str, data: bytes) -> None:
        """Replace the file atomically: readers see the old or the new content, never a mix.

        Parent directories are created, even when a concurrent `delete` removes them meanwhile.
        """
        ...

    def reader(
        self, path: str, offset: int = 0, length: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> AsyncGenerator[bytes, None]:
        """`length` bytes (all, if None) from `offset`, in chunks of at most `chunk_size`."""
        ...

    async def stat(self, path: str) -> FileInfo: ...

    async def list(self, path: str) -> list[str]:
        """Names of the direct children of a directory, sorted.

        A directory that has been emptied may be gone (object stores have no
        directories, only key prefixes): callers treat `FileNotFound` and `[]` alike.
        """
        ...

    async def move(self, src: str, dst: str) -> None:
        """Rename atomically, replacing `dst`; parent directories are created."""
        ...

    async def delete(self, path: str) -> None:
        """Remove a file or a whole directory tree, at once for every other caller.

        Of several racing deletes of one path exactly one succeeds; the others
        get `FileNotFound`. A write racing the delete lands before it (and is
        removed) or after it (and stays), never half-way.
        """
        ...

    async def redirect_url(self, path: str, expires_in: int) -> str | None:
        """A URL a client may GET the content at `path` from directly, valid `expires_in`
        seconds; None where the backend has none (the registry then serves the bytes)."""
        ...

    async def open_append(self, path: str) -> AppendWriter:
        """A writer appending to `path`, created (with its parents) if missing."""
        ...


@runtime_checkable
class MultipartStore(Protocol):
    """An optional driver capability: S3-style multipart uploads, for stores that cannot append.

    An upload is bound to one path when created; its parts (numbered from 1,
    each but the last at least `min_part_size` bytes) become the object at
    that path only when `complete_multipart` names them with their ETags, and
    until then nothing is visible there. Unknown uploads raise `FileNotFound`.
    """

    min_part_size: int
    # The size the storage layer cuts parts to (the driver's `chunksize`).
    part_size: int

    async def create_multipart(self, path: str) -> str: ...

    async def upload_part(self, path: str, upload_id: str, number: int, data: bytes) -> str:
        """Store part `number` (replacing an earlier one of that number); returns its ETag."""
        ...

    async def copy_parts(
        self, path: str, upload_id: str, source: str, size: int
    ) -> list[tuple[int, str, int]]:
        """The `size` bytes of the object at `source` as parts 1, 2, ... of the upload, each
        a valid part whatever parts follow (copied in the store); their (number, ETag, size)."""
        ...

    async def complete_multipart(
        self, path: str, upload_id: str, parts: Sequence[tuple[int, str]]
    ) -> None:
        """`FileNotFound` if the upload is gone or a part is not held with the ETag named."""
        ...

    async def abort_multipart(self, path: str, upload_id: str) -> None: ...

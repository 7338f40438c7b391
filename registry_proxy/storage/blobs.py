"""Content-addressed blobs (global) and their per-repository links."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from registry_proxy.reference import Digest
from registry_proxy.storage import paths
from registry_proxy.storage.driver import CHUNK_SIZE, FileNotFound, StorageDriver
from registry_proxy.storage.errors import BlobUnknown
from registry_proxy.storage.links import read_link, write_link

__all__ = ["Blobs"]


class Blobs:
    def __init__(self, driver: StorageDriver) -> None:
        self._driver = driver

    async def stat(self, digest: Digest) -> int | None:
        """Size of the global blob, or None if it is not stored."""
        try:
            info = await self._driver.stat(paths.blob_data(digest))
        except FileNotFound:
            return None
        return None if info.is_dir else info.size

    async def linked(self, repo: str, digest: Digest) -> int | None:
        """Size of the blob if it is linked into `repo` (and still stored), else None."""
        target = await read_link(self._driver, paths.layer_link(repo, digest))
        if target is None:
            return None
        # A link can outlive its blob (the Go GC leaves links behind).
        return await self.stat(target)

    def open(self, digest: Digest, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The blob's bytes `start..end` (inclusive; to the end if None) in 1 MiB chunks.

        Nothing is checked before the first chunk is awaited: call `linked`
        first; a blob that vanished in between raises `BlobUnknown` then.
        """
        length = None if end is None else max(end - start + 1, 0)
        return self._read(digest, start, length)

    async def _read(self, digest: Digest, start: int, length: int | None) -> AsyncIterator[bytes]:
        if length == 0:
            return
        chunks = self._driver.reader(paths.blob_data(digest), start, length, CHUNK_SIZE)
        try:
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    yield chunk
        except FileNotFound:
            raise BlobUnknown(digest) from None

    async def local_path(self, digest: Digest) -> Path | None:
        """The blob's real file (for zero-copy serving) if the driver has one and it exists."""
        path = self._driver.local_path(paths.blob_data(digest))
        if path is None or await self.stat(digest) is None:
            return None
        return path

    async def link(self, repo: str, digest: Digest) -> None:
        """Make a stored blob available in `repo` (cross-repository mount)."""
        if await self.stat(digest) is None:
            raise BlobUnknown(digest)
        await write_link(self._driver, paths.layer_link(repo, digest), digest)

    async def unlink(self, repo: str, digest: Digest) -> None:
        if await self.linked(repo, digest) is None:
            raise BlobUnknown(digest)
        try:
            await self._driver.delete(paths.layer_dir(repo, digest))
        except FileNotFound:
            raise BlobUnknown(digest) from None

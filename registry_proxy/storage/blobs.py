"""Content-addressed blobs (global) and their per-repository links.

The only writer of blob data: a manifest's bytes and a finished upload both
become a blob here, and only under the digest they were checked against.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

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
        target = await read_link(self._driver, paths.LAYERS.link(repo, digest))
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

    async def redirect_url(self, digest: Digest, expires_in: int) -> str | None:
        """Where a client may fetch the blob from the store itself, if the store allows it."""
        return await self._driver.redirect_url(paths.blob_data(digest), expires_in)

    async def put(self, digest: Digest, data: bytes) -> None:
        """Store small content (a manifest) under its digest, which the caller has checked."""
        if await self.stat(digest) is None:
            await self._driver.put_content(paths.blob_data(digest), data)

    async def adopt(self, staged: str, digest: Digest, size: int) -> None:
        """Make the verified file at driver path `staged` the blob `digest`, durably.

        `staged` must be a name only the caller knows: if what is there is not
        `size` bytes any more (someone removed it, and opening made it anew),
        `FileNotFound` is raised and nothing is stored.
        """
        if await self.stat(digest) is not None:
            with contextlib.suppress(FileNotFound):
                await self._driver.delete(staged)  # Same bytes already stored.
            return
        if size == 0:
            await self._driver.put_content(paths.blob_data(digest), b"")
            return
        # Durable before it becomes visible under its digest.
        await (await self._driver.open_append(staged)).close(sync=True)
        if (await self._driver.stat(staged)).size != size:
            raise FileNotFound(staged)
        await self._driver.move(staged, paths.blob_data(digest))

    async def link(self, repo: str, digest: Digest) -> None:
        """Make a stored blob available in `repo` (cross-repository mount)."""
        if await self.stat(digest) is None:
            raise BlobUnknown(digest)
        await write_link(self._driver, paths.LAYERS.link(repo, digest), digest)

    async def unlink(self, repo: str, digest: Digest) -> None:
        if await self.linked(repo, digest) is None:
            raise BlobUnknown(digest)
        try:
            await self._driver.delete(paths.LAYERS.directory(repo, digest))
        except FileNotFound:
            raise BlobUnknown(digest) from None

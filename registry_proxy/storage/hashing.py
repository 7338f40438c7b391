"""Digesting stored files without holding them in memory or blocking the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib

from registry_proxy.storage.driver import CHUNK_SIZE, FileNotFound, StorageDriver

__all__ = ["hash_stored"]


async def hash_stored(
    driver: StorageDriver, path: str, algorithm: str
) -> tuple[hashlib._Hash, int]:
    """A hasher fed with the whole file at `path` (a missing file counts as empty), and its size."""
    hasher = hashlib.new(algorithm)
    size = 0
    try:
        async with contextlib.aclosing(driver.reader(path, chunk_size=CHUNK_SIZE)) as chunks:
            async for chunk in chunks:
                # hashlib releases the GIL for large buffers; the loop stays free.
                await asyncio.to_thread(hasher.update, chunk)
                size += len(chunk)
    except FileNotFound:
        pass
    return hasher, size

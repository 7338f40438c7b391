"""A body read whole into memory, but never past a cap: what a remote party sends is bounded here.

Whoever reads a document from another server (a key set, a token answer, a
manifest) reads it through `read_capped`, which stops at the first chunk
that takes it over the cap rather than after the whole body has arrived;
what a body over the cap means (which error, which message) is the caller's.
"""

from __future__ import annotations

from collections.abc import AsyncIterable

__all__ = ["read_capped"]


async def read_capped(chunks: AsyncIterable[bytes], limit: int) -> bytes | None:
    """The chunks joined, or None as soon as they come to more than `limit` bytes."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)

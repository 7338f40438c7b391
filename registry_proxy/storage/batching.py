"""The request body regrouped into batches, so storage I/O and hashing cost one call per batch.

Chunks from the network are small (64 KiB); a thread hop, a write or a hash
update per chunk would cost more than the bytes do. Every upload strategy
reads its body through `batched`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable

from registry_proxy.storage.driver import CHUNK_SIZE

__all__ = ["BATCH_SIZE", "batched"]

BATCH_SIZE = CHUNK_SIZE


async def batched(
    chunks: AsyncIterable[bytes], size: int = BATCH_SIZE
) -> AsyncGenerator[list[bytes], None]:
    """Group `chunks` into batches of at least `size` bytes (the last may be short).

    A batch is the chunks themselves, in order: nothing is copied. If `chunks`
    fails, what was gathered is still yielded before the error.
    """
    batch: list[bytes] = []
    gathered = 0
    try:
        async for chunk in chunks:
            batch.append(chunk)
            gathered += len(chunk)
            if gathered >= size:
                yield batch
                batch, gathered = [], 0
    except Exception:
        if batch:
            yield batch
        raise
    if batch:
        yield batch

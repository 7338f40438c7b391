"""Where an upload session's bytes and running hash live: the one choice a driver makes for uploads.

`Uploads` owns the session (its id, its start time, the lock, the link at
commit); a strategy owns the data. A store that appends (filesystem, memory)
streams into a data file (`StreamedUploads`); a store that cannot (S3) cuts
the body into the parts of a multipart upload (`PartUploads`). Both keep
everything a session needs in storage, so any process may continue it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Protocol

from registry_proxy.reference import Digest
from registry_proxy.storage.blobs import Blobs
from registry_proxy.storage.driver import MultipartStore, StorageDriver
from registry_proxy.storage.part_uploads import PartUploads
from registry_proxy.storage.streamed_uploads import StreamedUploads

__all__ = ["UploadStrategy", "upload_strategy"]


class UploadStrategy(Protocol):
    """The data of upload sessions that exist; the caller checks that and serializes calls."""

    async def create(self, repo: str, upload_id: str) -> None:
        """Make the empty session's data (before the session becomes visible)."""
        ...

    async def size(self, repo: str, upload_id: str) -> int: ...

    async def append(
        self, repo: str, upload_id: str, chunks: AsyncIterable[bytes], start: int | None
    ) -> int:
        """Add the chunks; the new size. `RangeInvalid` if `start` is not the current end.

        What arrived before the body failed (client gone) is kept.
        """
        ...

    async def commit(
        self, repo: str, upload_id: str, digest: Digest, chunks: AsyncIterable[bytes] | None
    ) -> int:
        """Append the last chunks, check the digest and store the blob (not yet linked); its size.

        On a mismatch the session's data is dropped and `DigestInvalid` raised.
        """
        ...

    async def discard(self, repo: str, upload_id: str) -> None:
        """Drop the session's data, and the session with it; no error if it is gone."""
        ...


def upload_strategy(driver: StorageDriver, blobs: Blobs) -> UploadStrategy:
    """Parts where the driver has the multipart capability, else a streamed data file."""
    if isinstance(driver, MultipartStore):
        return PartUploads(driver, blobs)
    return StreamedUploads(driver, blobs)

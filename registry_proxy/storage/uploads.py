"""Resumable blob upload sessions, kept in storage so a restart or another replica can continue.

A session is `_uploads/<id>/startedat` (it exists once that does) and the
data its strategy keeps beside it (see `upload_strategy`): a data file on a
store that appends, parts and a session object on S3. Calls on one session
are serialized within a process; across processes the strategies guard it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
import weakref
from collections.abc import AsyncIterable
from dataclasses import dataclass

from registry_proxy.reference import Digest
from registry_proxy.storage import paths
from registry_proxy.storage.driver import FileNotFound, StorageDriver
from registry_proxy.storage.errors import BlobUploadUnknown, StorageError
from registry_proxy.storage.links import write_link
from registry_proxy.storage.upload_strategy import UploadStrategy

__all__ = ["UploadStatus", "Uploads"]


@dataclass(frozen=True, slots=True)
class UploadStatus:
    id: str
    offset: int
    started_at: dt.datetime


def _format_rfc3339(moment: dt.datetime) -> str:
    # Go's time.RFC3339 for a UTC time: whole seconds and a "Z".
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Uploads:
    def __init__(self, driver: StorageDriver, strategy: UploadStrategy) -> None:
        self._driver = driver
        self._strategy = strategy
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def start(self, repo: str) -> UploadStatus:
        upload_id = str(uuid.uuid4())
        started_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
        # The data first: a session is visible once "startedat" exists.
        await self._strategy.create(repo, upload_id)
        await self._driver.put_content(
            paths.upload_started_at(repo, upload_id), _format_rfc3339(started_at).encode()
        )
        return UploadStatus(upload_id, 0, started_at)

    async def status(self, repo: str, upload_id: str) -> UploadStatus:
        started_at = await self._require(repo, upload_id)
        return UploadStatus(upload_id, await self._strategy.size(repo, upload_id), started_at)

    async def append(
        self,
        repo: str,
        upload_id: str,
        chunks: AsyncIterable[bytes],
        start: int | None = None,
    ) -> int:
        """Append a chunk; returns the new size. `RangeInvalid` if `start` is not the current end.

        If `chunks` fails midway (client gone), what arrived so far is kept.
        """
        async with self._lock(repo, upload_id):
            await self._require(repo, upload_id)
            return await self._strategy.append(repo, upload_id, chunks, start)

    async def commit(
        self,
        repo: str,
        upload_id: str,
        digest: Digest,
        chunks: AsyncIterable[bytes] | None = None,
    ) -> int:
        """Append the last chunks, verify, store the blob and link it into `repo`; returns its size.

        On a digest mismatch the session is dropped and `DigestInvalid` raised.
        """
        async with self._lock(repo, upload_id):
            await self._require(repo, upload_id)
            size = await self._strategy.commit(repo, upload_id, digest, chunks)
            await write_link(self._driver, paths.LAYERS.link(repo, digest), digest)
            await self._strategy.discard(repo, upload_id)
            return size

    async def cancel(self, repo: str, upload_id: str) -> None:
        async with self._lock(repo, upload_id):
            await self._require(repo, upload_id)
            await self._strategy.discard(repo, upload_id)

    async def put(self, repo: str, digest: Digest, chunks: AsyncIterable[bytes]) -> int:
        """A whole blob in one call (monolithic upload); returns its size."""
        status = await self.start(repo)
        try:
            return await self.commit(repo, status.id, digest, chunks)
        except Exception:
            with contextlib.suppress(StorageError):
                await self.cancel(repo, status.id)
            raise

    # -- internals ---------------------------------------------------------

    def _lock(self, repo: str, upload_id: str) -> asyncio.Lock:
        key = _key(repo, upload_id)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def _require(self, repo: str, upload_id: str) -> dt.datetime:
        """When the session started; `BlobUploadUnknown` if there is none."""
        _key(repo, upload_id)
        path = paths.upload_started_at(repo, upload_id)
        try:
            text = (await self._driver.get_content(path, 1024)).decode("ascii", "replace")
        except FileNotFound:
            raise BlobUploadUnknown(upload_id) from None
        try:
            return dt.datetime.fromisoformat(text.strip())
        except ValueError:
            pass
        try:
            return (await self._driver.stat(path)).modified
        except FileNotFound:
            raise BlobUploadUnknown(upload_id) from None


def _key(repo: str, upload_id: str) -> str:
    if not paths.UPLOAD_ID.fullmatch(upload_id):
        # A client-supplied id; a malformed one names no session, it is not a path error.
        raise BlobUploadUnknown(upload_id)
    return f"{repo}/{upload_id}"

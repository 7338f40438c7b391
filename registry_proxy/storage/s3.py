"""A storage driver over an S3 bucket, in the Go registry's key layout.

A driver path `p` is the key `<rootdirectory>/p` (no leading slash), as the
Go registry's `s3` driver maps it, so either registry serves a bucket the
other wrote. S3 has no directories: a "directory" is a key prefix with at
least one object under it, listed with the `/` delimiter; it exists while it
holds something and is gone once emptied.

What S3 can promise, and what it cannot (several registry processes may share
the bucket; conditional writes are not to be relied on — Swift answers 501):

- an object PUT is atomic (readers see the old or the new content), and reads
  after a write see it (AWS S3 and a single-replica Swift are strongly
  consistent);
- a delete of a prefix lists the objects, then deletes them in batches: it is
  neither atomic across the objects nor exclusive — several racing deletes of
  one prefix may all succeed. The storage layer never relies on a delete to
  pick one winner: tags delete their `current/link` first (so a tag is listed
  exactly when it resolves), upload sessions are guarded by the digest check
  at commit and by the part ETags of their multipart upload;
- a move is a server-side copy and then a delete of the source, so both may
  be seen for a moment; uploads never move data on S3 except once, at commit,
  from their own session to a name only that commit knows.

Uploads use the driver's multipart capability (`create_multipart` and
friends, see `MultipartStore` in `driver`); `open_append` exists only for the
driver contract and small files, since S3 cannot append.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import concurrent.futures
import contextlib
import datetime as dt
import hashlib
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any, TypeVar

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
from registry_proxy.storage.s3_settings import MIN_PART_SIZE, S3Settings

__all__ = [
    "MIN_PART_SIZE",
    "S3Driver",
    "S3Settings",
]

MiB = 1024 * 1024
# CopyObject takes at most 5 GiB. Objects larger than this are copied part by
# part, a few ranges at once: on Swift here 4 x 128 MiB ranges copied a
# 512 MiB object at 175 MB/s against 148 MB/s for one CopyObject.
PARALLEL_COPY_SIZE = 256 * MiB
COPY_PART_SIZE = 128 * MiB
PARALLEL_COPIES = 4
# Part numbers a copy takes at most (of 10 000; 1 GiB parts for S3's largest, 5 TiB, object).
COPY_PARTS = 5_000
LIST_MAX = 1000
# One DeleteObjects call takes at most 1000 keys.
DELETE_BATCH = 1000
# S3 calls block; they run on a pool of their own, so a burst of them does not
# starve the event loop's default executor (hashing, files) and vice versa.
THREADS = 32
# An S3 "append" rewrites the whole object; only small files may grow that way.
APPEND_LIMIT = 64 * MiB
_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchUpload", "NotFound", "404"})
_COPY_SOURCE_GONE = _NOT_FOUND | {"NoSuchBucket"}
# A part replaced by another writer no longer has the ETag a session recorded.
_PARTS_GONE = _NOT_FOUND | {"InvalidPart", "InvalidPartOrder"}

T = TypeVar("T")


def _endpoint(settings: S3Settings) -> str | None:
    endpoint = settings.regionendpoint
    if not endpoint:
        return None
    if "://" in endpoint:
        return endpoint
    # As the Go driver does: a bare host gets its scheme from `secure`.
    return f"{'https' if settings.secure else 'http'}://{endpoint}"


def _add_content_md5(request: Any, **_: Any) -> None:
    # Swift (like the S3 spec of old) refuses a multi-object delete without it;
    # botocore now sends only its CRC checksums.
    body = request.body if isinstance(request.body, bytes) else b""
    digest = hashlib.md5(body, usedforsecurity=False).digest()
    request.headers["Content-MD5"] = base64.b64encode(digest).decode("ascii")


def _client(settings: S3Settings) -> Any:
    import boto3
    from botocore.config import Config as BotoConfig

    config = BotoConfig(
        region_name=settings.region,
        signature_version="s3v4" if settings.v4auth else "s3",
        s3={"addressing_style": "path" if settings.path_style else "auto"},
        # aws-chunked checksums are what S3 clones (Swift) trip over; MD5s
        # where the API requires them are added by hand.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=THREADS,
        retries={"max_attempts": 3, "mode": "standard"},
    )
    secret = "" if settings.secretkey is None else settings.secretkey.get_secret_value()
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=_endpoint(settings),
        aws_access_key_id=settings.accesskey or None,
        aws_secret_access_key=secret or None,
        use_ssl=settings.secure,
        config=config,
    )
    client.meta.events.register("before-sign.s3.DeleteObjects", _add_content_md5)
    return client


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    error = response.get("Error", {})
    code = str(error.get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code or str(status or "")


class _Appender:
    """`open_append` over S3: the file is rewritten whole on every write (small files only)."""

    def __init__(self, driver: S3Driver, path: str, data: bytes) -> None:
        self._driver = driver
        self._path = path
        self._data = bytearray(data)

    @property
    def size(self) -> int:
        return len(self._data)

    async def write(self, pieces: Sequence[bytes], feed: Feed | None = None) -> None:
        if isinstance(pieces, bytes | bytearray | memoryview):
            raise TypeError("write takes a sequence of pieces, not one buffer")
        if len(self._data) + sum(len(piece) for piece in pieces) > APPEND_LIMIT:
            raise StorageUnavailable(f"{self._path}: S3 cannot append beyond {APPEND_LIMIT} bytes")
        data = self._data + b"".join(pieces)
        await self._driver.put_content(self._path, bytes(data))
        self._data = data
        if feed is not None:
            for piece in pieces:
                feed(piece)

    async def close(self, *, sync: bool = False) -> None:
        return None  # Every write is already stored (and durable once S3 answered).


class S3Driver:
    min_part_size = MIN_PART_SIZE

    def __init__(self, settings: S3Settings, client: Any | None = None) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self.part_size = settings.chunksize
        self._prefix = settings.rootdirectory.strip("/")
        self._client = client if client is not None else _client(settings)
        self._pool = concurrent.futures.ThreadPoolExecutor(THREADS, thread_name_prefix="s3")

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self._client.close)

    # -- keys ----------------------------------------------------------------

    def key(self, path: str) -> str:
        """The object key of a driver path (which is checked first)."""
        parts = split_path(path)
        return "/".join([self._prefix, *parts]) if self._prefix else "/".join(parts)

    def _dir_prefix(self, path: str) -> str:
        """The key prefix of everything below driver path `path` ("" is the root)."""
        parts = split_path(path, allow_root=True)
        joined = "/".join([self._prefix, *parts]) if self._prefix else "/".join(parts)
        return f"{joined}/" if joined else ""

    # -- calls ---------------------------------------------------------------

    async def _call(
        self,
        path: str,
        method: Callable[..., T],
        not_found: frozenset[str] = _NOT_FOUND,
        **kwargs: Any,
    ) -> T:
        """`method(**kwargs)` on the pool; "not found" becomes `FileNotFound`, the rest unavailable."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, lambda: method(**kwargs))
        except FileNotFound:
            raise
        except Exception as exc:
            if _code(exc) in not_found:
                raise FileNotFound(path) from None
            raise StorageUnavailable(f"{path}: S3 {type(exc).__name__}: {exc}") from exc

    async def _run(self, path: str, function: Callable[[], T]) -> T:
        return await self._call(path, function)

    # -- the driver protocol ------------------------------------------------

    async def redirect_url(self, path: str, expires_in: int) -> str | None:
        """A presigned GET of the object (signed here, no request to the store)."""
        key = self.key(path)
        url: str = self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )
        return url

    async def get_content(self, path: str, max_size: int = MAX_CONTENT_SIZE) -> bytes:
        key = self.key(path)

        def read() -> bytes | None:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            body = response["Body"]
            try:
                if int(response.get("ContentLength", 0)) > max_size:
                    return None
                data: bytes = body.read(max_size + 1)
            finally:
                body.close()
            return None if len(data) > max_size else data

        data = await self._run(path, read)
        if data is None:
            raise TooLarge(path, max_size)
        return data

    async def put_content(self, path: str, data: bytes) -> None:
        await self._call(
            path, self._client.put_object, Bucket=self.bucket, Key=self.key(path), Body=data
        )

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> AsyncGenerator[bytes, None]:
        key = self.key(path)
        if length == 0:
            await self.stat(path)
            return
        end = "" if length is None else str(offset + length - 1)

        # A whole object is asked for without a Range: Swift serves a ranged
        # GET of a multipart (segmented) object measurably slower.
        ranged = {} if offset == 0 and length is None else {"Range": f"bytes={offset}-{end}"}

        def open_body() -> Any:
            try:
                response = self._client.get_object(Bucket=self.bucket, Key=key, **ranged)
            except Exception as exc:
                if _code(exc) == "InvalidRange":
                    return None  # At or past the end of an object that exists.
                raise
            return response["Body"]

        body = await self._run(path, open_body)
        if body is None:
            return
        # One read ahead: the store sends the next chunk while the caller
        # passes this one on (the store and the client are both kept busy).
        ahead = asyncio.ensure_future(self._call(path, body.read, amt=chunk_size))
        try:
            while True:
                data: bytes = await ahead
                if not data:
                    return
                ahead = asyncio.ensure_future(self._call(path, body.read, amt=chunk_size))
                yield data
        finally:
            # The body is not closed under a read still running in the pool.
            await asyncio.wait([ahead])
            if not ahead.cancelled():
                ahead.exception()  # retrieved: a failure after the caller stopped is moot
            await asyncio.get_running_loop().run_in_executor(self._pool, body.close)

    async def stat(self, path: str) -> FileInfo:
        if path == "":
            split_path(path, allow_root=True)
            return FileInfo(path="", size=0, modified=dt.datetime.now(dt.UTC), is_dir=True)
        key = self.key(path)
        try:
            head = await self._call(path, self._client.head_object, Bucket=self.bucket, Key=key)
        except FileNotFound:
            pass
        else:
            return FileInfo(
                path=path,
                size=int(head["ContentLength"]),
                modified=head["LastModified"],
                is_dir=False,
            )
        listing = await self._call(
            path,
            self._client.list_objects_v2,
            Bucket=self.bucket,
            Prefix=f"{key}/",
            MaxKeys=1,
        )
        contents = listing.get("Contents") or []
        if not contents:
            raise FileNotFound(path)
        return FileInfo(path=path, size=0, modified=contents[0]["LastModified"], is_dir=True)

    async def list(self, path: str) -> builtins.list[str]:
        prefix = self._dir_prefix(path)
        names: set[str] = set()
        async for page in self._pages(path, prefix, delimiter="/"):
            for item in page.get("Contents") or []:
                name = str(item["Key"])[len(prefix) :]
                if name:  # A "directory marker" some tools write is the prefix itself.
                    names.add(name)
            for common in page.get("CommonPrefixes") or []:
                name = str(common["Prefix"])[len(prefix) :].rstrip("/")
                if name:
                    names.add(name)
        if not names and path != "":
            raise FileNotFound(path)
        return sorted(names)

    async def move(self, src: str, dst: str) -> None:
        source, target = self.key(src), self.key(dst)
        try:
            info = await self.stat(src)
        except FileNotFound:
            raise FileNotFound(src) from None
        if not info.is_dir:
            await self._copy(src, source, target, info.size)
            await self._delete_keys(src, [source])
            return
        # A "directory": every object below it, one by one (not atomic on S3).
        base = f"{source}/"
        keys = await self._keys_below(src, base)
        for key in keys:
            size = await self._object_size(src, key)
            await self._copy(src, key, f"{target}/{key[len(base) :]}", size)
        await self._delete_keys(src, keys)

    async def delete(self, path: str) -> None:
        key = self.key(path)
        keys = await self._keys_below(path, f"{key}/")
        try:
            await self._call(path, self._client.head_object, Bucket=self.bucket, Key=key)
        except FileNotFound:
            pass
        else:
            keys.append(key)
        if not keys:
            raise FileNotFound(path)
        await self._delete_keys(path, keys)

    async def open_append(self, path: str) -> _Appender:
        try:
            data = await self.get_content(path, APPEND_LIMIT)
        except FileNotFound:
            data = b""
            await self.put_content(path, data)
        return _Appender(self, path, data)

    # -- the multipart capability ------------------------------------------

    async def create_multipart(self, path: str) -> str:
        return await self._create_upload(path, self.key(path))

    async def upload_part(self, path: str, upload_id: str, number: int, data: bytes) -> str:
        response = await self._call(
            path,
            self._client.upload_part,
            Bucket=self.bucket,
            Key=self.key(path),
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
        )
        return str(response["ETag"])

    async def copy_parts(
        self, path: str, upload_id: str, source: str, size: int
    ) -> builtins.list[tuple[int, str, int]]:
        """The `size` bytes of the object at `source` as parts 1, 2, ... of the upload, copied
        in the store; their (number, ETag, size). Each is a valid part whatever parts follow."""
        return await self._copy_parts(
            path, self.key(path), upload_id, self.key(source), size, followed=True
        )

    async def complete_multipart(
        self, path: str, upload_id: str, parts: Sequence[tuple[int, str]]
    ) -> None:
        """Make the parts (number, ETag) the object; S3 checks every ETag against what it holds."""
        await self._complete_upload(path, self.key(path), upload_id, parts, not_found=_PARTS_GONE)

    async def abort_multipart(self, path: str, upload_id: str) -> None:
        await self._abort_upload(path, self.key(path), upload_id)

    # -- internals ---------------------------------------------------------

    async def _create_upload(self, path: str, key: str) -> str:
        """A multipart upload of object key `key`; its id."""
        response = await self._call(
            path,
            self._client.create_multipart_upload,
            Bucket=self.bucket,
            Key=key,
            ContentType="application/octet-stream",
        )
        return str(response["UploadId"])

    async def _complete_upload(
        self,
        path: str,
        key: str,
        upload_id: str,
        parts: Sequence[tuple[int, str]],
        not_found: frozenset[str] = _NOT_FOUND,
    ) -> None:
        await self._call(
            path,
            self._client.complete_multipart_upload,
            not_found=not_found,
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in parts]},
        )

    async def _abort_upload(self, path: str, key: str, upload_id: str) -> None:
        await self._call(
            path,
            self._client.abort_multipart_upload,
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
        )

    async def _pages(
        self, path: str, prefix: str, delimiter: str | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": LIST_MAX}
            if delimiter is not None:
                kwargs["Delimiter"] = delimiter
            if token is not None:
                kwargs["ContinuationToken"] = token
            page: dict[str, Any] = await self._call(path, self._client.list_objects_v2, **kwargs)
            yield page
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    async def _keys_below(self, path: str, prefix: str) -> builtins.list[str]:
        keys: builtins.list[str] = []
        async for page in self._pages(path, prefix):
            keys.extend(str(item["Key"]) for item in page.get("Contents") or [])
        return keys

    async def _object_size(self, path: str, key: str) -> int:
        head = await self._call(path, self._client.head_object, Bucket=self.bucket, Key=key)
        return int(head["ContentLength"])

    async def _delete_keys(self, path: str, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            response = await self._call(
                path,
                self._client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
            )
            errors = [e for e in response.get("Errors") or [] if e.get("Code") != "NoSuchKey"]
            if errors:
                first = errors[0]
                raise StorageUnavailable(
                    f"{path}: S3 could not delete {first.get('Key')}: {first.get('Code')}"
                )

    async def _copy(self, path: str, source: str, target: str, size: int) -> None:
        if size <= PARALLEL_COPY_SIZE:
            await self._copy_call(
                path,
                self._client.copy_object,
                source,
                target,
                ContentType="application/octet-stream",
                MetadataDirective="REPLACE",
            )
            return
        upload_id = await self._create_upload(path, target)
        try:
            parts = await self._copy_parts(path, target, upload_id, source, size, followed=False)
            await self._complete_upload(path, target, upload_id, [(n, e) for n, e, _ in parts])
        except BaseException:
            with contextlib.suppress(StorageUnavailable, FileNotFound):
                await self._abort_upload(path, target, upload_id)
            raise

    async def _copy_call(
        self, path: str, method: Callable[..., Any], source: str, target: str, **kwargs: Any
    ) -> Any:
        """`method` (an object or part copy) from object key `source` to key `target`."""
        return await self._call(
            path,
            method,
            # Swift names a vanished copy source so.
            not_found=_COPY_SOURCE_GONE,
            Bucket=self.bucket,
            Key=target,
            CopySource={"Bucket": self.bucket, "Key": source},
            **kwargs,
        )

    async def _copy_parts(
        self, path: str, target: str, upload_id: str, source: str, size: int, *, followed: bool
    ) -> builtins.list[tuple[int, str, int]]:
        """Object key `source` copied into upload `upload_id` of key `target`, a few ranges at
        once; `followed` if more parts will come after these."""
        slots = asyncio.Semaphore(PARALLEL_COPIES)

        async def copy_range(number: int, start: int, end: int) -> tuple[int, str, int]:
            async with slots:
                copied = await self._copy_call(
                    path,
                    self._client.upload_part_copy,
                    source,
                    target,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySourceRange=f"bytes={start}-{end - 1}",
                )
            return number, str(copied["CopyPartResult"]["ETag"]), end - start

        tasks = [
            asyncio.ensure_future(copy_range(number, start, end))
            for number, (start, end) in enumerate(_copy_ranges(size, followed), 1)
        ]
        try:
            return builtins.list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise


def _copy_ranges(size: int, followed: bool) -> builtins.list[tuple[int, int]]:
    """Ranges `[start, end)` covering `size` bytes, each a valid part (at most 5 GiB, and at least
    5 MiB but the last of an upload: if `followed`, a short last one joins the one before), in at
    most half of S3's 10 000 part numbers, so an upload copied into has room for what follows."""
    part_size = max(COPY_PART_SIZE, -(-size // COPY_PARTS))
    ranges = [(start, min(start + part_size, size)) for start in range(0, size, part_size)]
    if followed and len(ranges) > 1 and ranges[-1][1] - ranges[-1][0] < MIN_PART_SIZE:
        ranges[-2:] = [(ranges[-2][0], ranges[-1][1])]
    return ranges

"""GET/HEAD/DELETE /v2/<name>/blobs/<digest>, with Range support."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from registry_proxy.errors import RegistryError
from registry_proxy.reference import Digest
from registry_proxy.routes.common import (
    API_HEADERS,
    authorize,
    delete,
    parse_digest,
    pull,
    repository,
    services,
    writable,
)
from registry_proxy.routes.ranges import RangeNotSatisfiable, byte_range
from registry_proxy.routes.upstream import pulled_blob, upstream_of
from registry_proxy.services import Services
from registry_proxy.storage.errors import BlobUnknown
from registry_proxy.upstreams.pull_through import BlobStream
from registry_proxy.upstreams.routing import Routed

# How long a redirect's signed URL works, as the Go registry's `s3` driver signs them.
REDIRECT_SECONDS = 20 * 60


async def get_blob(request: Request) -> Response:
    name = repository(request)
    digest = parse_digest(request.path_params["digest"])
    routed = upstream_of(request, name)
    if routed is not None:
        name = routed.local
    await authorize(request, pull(name))
    svc = services(request)
    if routed is None:
        return await _stored_blob(request, svc, name, digest, started=False)
    # Twice: `registry-proxy gc` may remove the blob between finding it and reading it;
    # then it is fetched again.
    for _attempt in range(2):
        streamed = await _from_upstream(request, svc, routed, digest)
        if streamed is not None:
            return streamed
        with contextlib.suppress(BlobUnknown):
            return await _stored_blob(request, svc, name, digest, started=True)
    raise RegistryError("BLOB_UNKNOWN", {"digest": str(digest)})


async def _stored_blob(
    request: Request, svc: Services, name: str, digest: Digest, *, started: bool
) -> Response:
    """The blob from storage; with `started`, its first bytes are read before answering, so
    a blob gone meanwhile is `BlobUnknown` here rather than an answer cut short."""
    storage = svc.storage
    size = await storage.blobs.linked(name, digest)
    if size is None:
        if started:
            raise BlobUnknown(digest)
        raise RegistryError("BLOB_UNKNOWN", {"digest": str(digest)})
    if svc.redirect and request.method == "GET":
        url = await storage.blobs.redirect_url(digest, REDIRECT_SECONDS)
        if url is not None:
            # The bytes come from the store; the client keeps its Range header for it.
            headers = {**API_HEADERS, "Location": url, "Docker-Content-Digest": str(digest)}
            return Response(status_code=307, headers=headers)
    headers = {
        **API_HEADERS,
        "Docker-Content-Digest": str(digest),
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
        "ETag": f'"{digest}"',
        "Cache-Control": "max-age=31536000",
    }
    status = 200
    start, end = 0, size - 1
    range_header = request.headers.get("range")
    if range_header is not None:
        try:
            wanted = byte_range(range_header, size)
        except RangeNotSatisfiable:
            raise RegistryError(
                "RANGE_INVALID",
                {"range": range_header[:100]},
                message="requested range not satisfiable",
                headers={"Content-Range": f"bytes */{size}"},
            ) from None
        if wanted is not None:
            start, end = wanted
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1 if size else 0)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    if size == 0:
        return Response(b"", status_code=status, headers=headers)
    # A whole blob is read to its end, not as a range: a store may serve the
    # whole object faster (Swift does, for a multipart object).
    chunks = storage.blobs.open(digest, start, end) if status == 206 else storage.blobs.open(digest)
    if started:
        chunks = await _started(chunks)
    return StreamingResponse(chunks, status_code=status, headers=headers)


async def _started(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`chunks` with its first piece read already (and given first)."""
    first = await anext(chunks, b"")

    async def rest() -> AsyncIterator[bytes]:
        yield first
        async for piece in chunks:
            yield piece

    return rest()


async def _from_upstream(
    request: Request, svc: Services, routed: Routed, digest: Digest
) -> Response | None:
    """The answer while the blob is not in storage (None: serve it from there).

    A whole blob not cached yet comes as the upstream sends it; a range or a
    HEAD once it is stored (through a gateway, as the upstream answers).
    """
    if routed.upstream.cache:
        wanted = request.method == "GET" and "range" not in request.headers
    else:
        wanted = request.method == "GET"
    stream = await pulled_blob(svc, routed, digest, stream=wanted)
    return None if stream is None else _streamed(request, digest, stream)


def _streamed(request: Request, digest: Digest, stream: BlobStream) -> Response:
    headers = {
        **API_HEADERS,
        "Docker-Content-Digest": str(digest),
        "Content-Type": "application/octet-stream",
        "ETag": f'"{digest}"',
    }
    if stream.size is not None:
        headers["Content-Length"] = str(stream.size)
    if request.method == "HEAD":
        return Response(status_code=200, headers=headers)
    return StreamingResponse(stream.chunks, status_code=200, headers=headers)


async def delete_blob(request: Request) -> Response:
    name = writable(request)
    digest = parse_digest(request.path_params["digest"])
    await authorize(request, delete(name))
    svc = services(request)
    if not svc.delete_enabled:
        raise RegistryError("UNSUPPORTED", message="deletes are disabled on this registry")
    await svc.storage.blobs.unlink(name, digest)
    return Response(status_code=202, headers={**API_HEADERS, "Docker-Content-Digest": str(digest)})

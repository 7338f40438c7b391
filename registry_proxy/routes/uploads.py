"""Blob uploads: POST (plain, monolithic, mount), PATCH, PUT, GET status, DELETE cancel."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from registry_proxy.errors import RegistryError
from registry_proxy.reference import InvalidName, check_name
from registry_proxy.routes.common import (
    API_HEADERS,
    authorize,
    body_stream,
    delete,
    parse_digest,
    pull,
    push,
    services,
    writable,
)
from registry_proxy.routes.numbers import bounded_int, is_number
from registry_proxy.routes.ranges import MAX_OFFSET, content_range


def _range_header(size: int) -> str:
    # The Go registry reports "0-0" for an empty upload too.
    return f"0-{max(size - 1, 0)}"


def _session_headers(name: str, upload_id: str, size: int) -> dict[str, str]:
    return {
        **API_HEADERS,
        "Location": f"/v2/{name}/blobs/uploads/{upload_id}",
        "Range": _range_header(size),
        "Docker-Upload-UUID": upload_id,
        "Content-Length": "0",
    }


def _blob_created(name: str, digest: str) -> Response:
    return Response(
        status_code=201,
        headers={
            **API_HEADERS,
            "Location": f"/v2/{name}/blobs/{digest}",
            "Docker-Content-Digest": digest,
            "Content-Length": "0",
        },
    )


def _chunk_start(request: Request) -> int | None:
    header = request.headers.get("content-range")
    if header is None:
        return None
    parsed = content_range(header)
    if parsed is None:
        raise RegistryError("BLOB_UPLOAD_INVALID", {"content-range": header[:100]}, status=416)
    start, end = parsed
    if end < start or end > MAX_OFFSET:
        raise RegistryError("RANGE_INVALID", {"content-range": header[:100]})
    length = request.headers.get("content-length")
    if (
        length is not None
        and is_number(length)
        and bounded_int(length, MAX_OFFSET + 1) != end - start + 1
    ):
        raise RegistryError("SIZE_INVALID", {"content-range": header[:100], "length": length[:100]})
    return start


async def start_upload(request: Request) -> Response:
    name = writable(request)
    token = await authorize(request, push(name))
    storage = services(request).storage
    params = request.query_params

    mount, source = params.get("mount"), params.get("from")
    if mount is not None and source is not None:
        digest = parse_digest(mount)
        try:
            check_name(source)
        except InvalidName:
            raise RegistryError("NAME_INVALID", {"name": source[:300]}) from None
        # Without pull on the source there is no mount, just an ordinary upload.
        if token.allows(pull(source)) and await storage.blobs.linked(source, digest) is not None:
            await storage.blobs.link(name, digest)
            return _blob_created(name, str(digest))

    digest_param = params.get("digest")
    if digest_param is not None:
        digest = parse_digest(digest_param)
        with services(request).uploads.hold(token.subject):
            await storage.uploads.put(name, digest, body_stream(request))
        return _blob_created(name, str(digest))

    status = await storage.uploads.start(name)
    return Response(status_code=202, headers=_session_headers(name, status.id, 0))


async def upload_status(request: Request) -> Response:
    name = writable(request)
    await authorize(request, pull(name))
    upload_id = request.path_params["upload_id"]
    status = await services(request).storage.uploads.status(name, upload_id)
    return Response(status_code=204, headers=_session_headers(name, status.id, status.offset))


async def patch_upload(request: Request) -> Response:
    name = writable(request)
    token = await authorize(request, push(name))
    upload_id = request.path_params["upload_id"]
    start = _chunk_start(request)
    svc = services(request)
    with svc.uploads.hold(token.subject):
        size = await svc.storage.uploads.append(name, upload_id, body_stream(request), start)
    return Response(status_code=202, headers=_session_headers(name, upload_id, size))


async def finish_upload(request: Request) -> Response:
    name = writable(request)
    token = await authorize(request, push(name))
    upload_id = request.path_params["upload_id"]
    digest_param = request.query_params.get("digest")
    if digest_param is None:
        raise RegistryError("DIGEST_INVALID", message="the digest parameter is required")
    digest = parse_digest(digest_param)
    start = _chunk_start(request)
    uploads = services(request).storage.uploads
    if start is not None:
        current = await uploads.status(name, upload_id)
        if start != current.offset:
            raise RegistryError(
                "RANGE_INVALID",
                {"expected_start": current.offset},
                headers=_session_headers(name, upload_id, current.offset),
            )
    with services(request).uploads.hold(token.subject):
        await uploads.commit(name, upload_id, digest, body_stream(request))
    return _blob_created(name, str(digest))


async def cancel_upload(request: Request) -> Response:
    name = writable(request)
    await authorize(request, delete(name))
    await services(request).storage.uploads.cancel(name, request.path_params["upload_id"])
    return Response(status_code=204, headers={**API_HEADERS, "Content-Length": "0"})

"""GET/HEAD/PUT/DELETE /v2/<name>/manifests/<reference>."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from registry_proxy.errors import RegistryError
from registry_proxy.reference import InvalidTag, check_tag, is_digest
from registry_proxy.routes.common import (
    API_HEADERS,
    authorize,
    delete,
    parse_digest,
    pull,
    push,
    repository,
    services,
    writable,
)
from registry_proxy.routes.numbers import bounded_int, is_number
from registry_proxy.routes.upstream import pulled_manifest, upstream_of
from registry_proxy.storage.manifests import StoredManifest
from registry_proxy.upstreams.pull_through import STALE, ServedManifest

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# `?tag=` parameters one push may carry: each is two writes to storage.
MAX_EXTRA_TAGS = 100


def _reference(request: Request) -> str:
    """The tag or canonical digest in the path; what a malformed one answers depends on the verb.

    A pull names something that cannot exist: 404 `MANIFEST_UNKNOWN` (as the
    conformance suites expect). A push must say what was wrong with it:
    `DIGEST_INVALID` or `TAG_INVALID`. A delete refuses a malformed tag and
    finds no manifest under a malformed digest.
    """
    reference: str = request.path_params["reference"]
    pulling = request.method in ("GET", "HEAD")
    if is_digest(reference):
        code = "DIGEST_INVALID" if request.method == "PUT" else "MANIFEST_UNKNOWN"
        return str(parse_digest(reference, code=code))
    try:
        return check_tag(reference)
    except InvalidTag:
        if pulling:
            raise RegistryError("MANIFEST_UNKNOWN", {"reference": reference[:300]}) from None
        raise RegistryError("TAG_INVALID", {"tag": reference[:300]}) from None


async def get_manifest(request: Request) -> Response:
    name = repository(request)
    reference = _reference(request)
    svc = services(request)
    routed = upstream_of(request, name)
    await authorize(request, pull(routed.local if routed else name))
    if routed is None:
        manifest: StoredManifest | ServedManifest = await svc.storage.manifests.get(name, reference)
    else:
        manifest = await pulled_manifest(svc, routed, reference)
    headers = {
        **API_HEADERS,
        "Docker-Content-Digest": str(manifest.digest),
        "Content-Type": manifest.media_type,
        "Content-Length": str(len(manifest.body)),
        "ETag": f'"{manifest.digest}"',
    }
    if isinstance(manifest, ServedManifest) and manifest.stale:
        headers["Warning"] = STALE
    if request.method == "HEAD":
        return Response(status_code=200, headers=headers)
    return Response(manifest.body, status_code=200, headers=headers)


async def _read_manifest(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if (
        declared is not None
        and is_number(declared)
        and bounded_int(declared, MAX_MANIFEST_BYTES + 1) > MAX_MANIFEST_BYTES
    ):
        raise RegistryError(
            "PAYLOAD_TOO_LARGE", {"limit": MAX_MANIFEST_BYTES}, message="manifest too large"
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_MANIFEST_BYTES:
            raise RegistryError(
                "PAYLOAD_TOO_LARGE", {"limit": MAX_MANIFEST_BYTES}, message="manifest too large"
            )
    return bytes(body)


async def put_manifest(request: Request) -> Response:
    name = writable(request)
    reference = _reference(request)
    extra_tags = list(dict.fromkeys(request.query_params.getlist("tag")))
    if len(extra_tags) > MAX_EXTRA_TAGS:
        raise RegistryError(
            "TAG_INVALID", {"limit": MAX_EXTRA_TAGS}, message="too many tag parameters"
        )
    for tag in extra_tags:
        try:
            check_tag(tag)
        except InvalidTag:
            raise RegistryError("TAG_INVALID", {"tag": tag[:300]}) from None
    token = await authorize(request, push(name))
    svc = services(request)
    # A manifest is read whole (up to 4 MiB) before it is stored: a body like any other.
    with svc.uploads.hold(token.subject):
        body = await _read_manifest(request)
        content_type = request.headers.get("content-type")
        result = await svc.storage.manifests.put(name, reference, body, content_type, extra_tags)
    headers = {
        **API_HEADERS,
        "Location": f"/v2/{name}/manifests/{result.digest}",
        "Docker-Content-Digest": str(result.digest),
        "Content-Length": "0",
    }
    if result.subject is not None:
        headers["OCI-Subject"] = str(result.subject)
    applied = list(dict.fromkeys(([] if is_digest(reference) else [reference]) + extra_tags))
    if applied:
        headers["OCI-Tag"] = ", ".join(applied)
    return Response(status_code=201, headers=headers)


async def delete_manifest(request: Request) -> Response:
    name = writable(request)
    reference = _reference(request)
    await authorize(request, delete(name))
    svc = services(request)
    if not svc.delete_enabled:
        raise RegistryError("UNSUPPORTED", message="deletes are disabled on this registry")
    if is_digest(reference):
        await svc.storage.manifests.delete(name, parse_digest(reference))
    else:
        await svc.storage.manifests.delete_tag(name, reference)
    return Response(status_code=202, headers={**API_HEADERS, "Content-Length": "0"})

"""GET /v2/<name>/referrers/<digest>: always an image index, never a 404; paged by `Link`."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from registry_proxy.errors import RegistryError
from registry_proxy.routes.common import (
    API_HEADERS,
    authorize,
    parse_digest,
    pull,
    repository,
    services,
)

INDEX = "application/vnd.oci.image.index.v1+json"
_HEAD = b'{"schemaVersion":2,"mediaType":"' + INDEX.encode() + b'","manifests":['
# `last` is a digest we handed out in a `Link`; anything longer is not one.
MAX_LAST = 200


async def referrers(request: Request) -> Response:
    name = repository(request)
    digest = parse_digest(request.path_params["digest"])
    await authorize(request, pull(name))
    params = request.query_params
    artifact_type = params.get("artifactType") or None
    last = params.get("last") or None
    if last is not None and len(last) > MAX_LAST:
        raise RegistryError("PAGINATION_NUMBER_INVALID", {"last": last[:100]})
    page = await services(request).storage.referrers.page(name, digest, artifact_type, last)
    headers = dict(API_HEADERS)
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    if page.last is not None:
        query = {"last": page.last, **({"artifactType": artifact_type} if artifact_type else {})}
        headers["Link"] = f'</v2/{name}/referrers/{digest}?{urlencode(query)}>; rel="next"'
    # The stored descriptors are JSON already: joined, not decoded and encoded again.
    body = _HEAD + b",".join(page.descriptors) + b"]}"
    return Response(body, headers=headers, media_type=INDEX)

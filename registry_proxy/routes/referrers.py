"""GET /v2/<name>/referrers/<digest>: always an image index, never a 404."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry_proxy.routes.common import (
    API_HEADERS,
    authorize,
    parse_digest,
    pull,
    repository,
    services,
)

INDEX = "application/vnd.oci.image.index.v1+json"


async def referrers(request: Request) -> Response:
    name = repository(request)
    digest = parse_digest(request.path_params["digest"])
    await authorize(request, pull(name))
    artifact_type = request.query_params.get("artifactType") or None
    descriptors = await services(request).storage.referrers.list(name, digest, artifact_type)
    headers = dict(API_HEADERS)
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    body = {"schemaVersion": 2, "mediaType": INDEX, "manifests": descriptors}
    return JSONResponse(body, headers=headers, media_type=INDEX)

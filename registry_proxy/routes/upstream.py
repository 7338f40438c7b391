"""What the pull handlers ask of an upstream registry, its failures in the OCI envelope."""

from __future__ import annotations

from starlette.requests import Request

from registry_proxy.errors import RegistryError, from_upstream
from registry_proxy.reference import Digest
from registry_proxy.routes.common import services
from registry_proxy.services import Services
from registry_proxy.upstreams.client import UpstreamError
from registry_proxy.upstreams.pull_through import BlobStream, ServedManifest
from registry_proxy.upstreams.routing import Routed

__all__ = ["pulled_blob", "pulled_manifest", "upstream_of"]


def upstream_of(request: Request, name: str) -> Routed | None:
    """The upstream `name` (and the request's `?ns=`) is served from; None: here.

    A name under an upstream's prefix that its `repositories` leave out is
    unknown: nothing is asked of the upstream for it.
    """
    upstreams = services(request).upstreams
    if not upstreams:  # the usual registry: nothing to parse or look up
        return None
    routed = upstreams.route(name, request.query_params.get("ns"))
    if routed is not None and not routed.upstream.allows(routed.remote):
        raise RegistryError("NAME_UNKNOWN", {"name": name[:300]})
    return routed


async def pulled_manifest(svc: Services, routed: Routed, reference: str) -> ServedManifest:
    try:
        return await svc.pull_through.manifest(routed, reference)
    except UpstreamError as exc:
        raise from_upstream(exc, "MANIFEST_UNKNOWN", {"reference": reference[:300]}) from None


async def pulled_blob(
    svc: Services, routed: Routed, digest: Digest, *, stream: bool
) -> BlobStream | None:
    try:
        return await svc.pull_through.blob(routed, digest, stream=stream)
    except UpstreamError as exc:
        raise from_upstream(exc, "BLOB_UNKNOWN", {"digest": str(digest)}) from None

"""The registry's repositories and tags, read through its own API as the signed-in admin.

The page asks this server for a token for its admin (filtered and audited
like any other) and reads `_catalog`, each repository's tags and each tag's
manifest from `ui.registry_url`. Bounded: the first 50 repositories, 50 tags each.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response

from tokenserver.grants import GrantService, Refused, TokenRequest
from tokenserver.routes.ui.common import base_context
from tokenserver.routes.ui.render import page
from tokenserver.routes.ui.session import SignedIn, signed_in

__all__ = ["router"]

router = APIRouter()

MAX_REPOSITORIES = 50
MAX_TAGS = 50
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


async def _token(request: Request, who: SignedIn, scopes: list[str]) -> str:
    """A token for the signed-in admin, as the token endpoint would grant it."""
    grants: GrantService = request.app.state.grants
    service = sorted(grants.services)[0]
    ip = request.client.host if request.client else None
    token_request = TokenRequest(service, scopes, "session", client_ip=ip)
    return (await grants.grant(token_request, identity=who.identity)).token.token


def _size(manifest: dict[str, Any], raw: bytes) -> int:
    """What pulling it costs: the manifest, its config and layers (or its child manifests)."""
    parts = [manifest.get("config") or {}, *(manifest.get("layers") or [])]
    parts += manifest.get("manifests") or []
    sizes = [p.get("size") for p in parts if isinstance(p, dict)]
    return len(raw) + sum(s for s in sizes if isinstance(s, int))


async def _read(request: Request, who: SignedIn, base: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        catalog_token = await _token(request, who, ["registry:catalog:*"])
        catalog = await client.get(
            "/v2/_catalog",
            params={"n": MAX_REPOSITORIES},
            headers={"Authorization": f"Bearer {catalog_token}"},
        )
        catalog.raise_for_status()
        names = [str(n) for n in catalog.json().get("repositories", [])][:MAX_REPOSITORIES]
        if not names:
            return []
        token = await _token(request, who, [f"repository:{n}:pull" for n in names])
        auth = {"Authorization": f"Bearer {token}", "Accept": MANIFEST_TYPES}
        repositories = []
        for name in names:
            listed = await client.get(f"/v2/{quote(name)}/tags/list", headers=auth)
            tags = (listed.json().get("tags") or [])[:MAX_TAGS] if listed.is_success else []
            rows = []
            for tag in tags:
                got = await client.get(
                    f"/v2/{quote(name)}/manifests/{quote(str(tag))}", headers=auth
                )
                if not got.is_success:
                    continue
                manifest = json.loads(got.content)
                rows.append(
                    {
                        "name": tag,
                        "digest": got.headers.get("docker-content-digest", ""),
                        "media_type": got.headers.get("content-type", ""),
                        "size": _size(manifest, got.content),
                    }
                )
            repositories.append({"name": name, "tags": rows})
        return repositories


@router.get("/repositories", include_in_schema=False)
async def repositories(request: Request) -> Response:
    who = await signed_in(request)
    base: str | None = request.app.state.config.ui.registry_url
    context = base_context(request, who)
    found: list[dict[str, Any]] = []
    if base:
        try:
            found = await _read(request, who, base)
        except (httpx.HTTPError, ValueError, Refused) as exc:
            context["error"] = f"The registry at {base} could not be read: {type(exc).__name__}"
    return page(request, "repositories.html", registry_url=base, repositories=found, **context)

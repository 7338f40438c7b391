"""The signing key and every key the JWKS publishes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tokenserver.routes.common import services
from tokenserver.routes.ui.common import base_context
from tokenserver.routes.ui.render import page
from tokenserver.routes.ui.session import admin_signed_in

__all__ = ["router"]

router = APIRouter()


@router.get("/keys", include_in_schema=False)
async def keys(request: Request) -> Response:
    who = await admin_signed_in(request)
    keyset = services(request).keys
    rows = [
        {
            "kid": key.kid,
            "alg": key.alg,
            "created": key.certificate.not_valid_before_utc,
            "file": key.path.name,
            "signing": key.kid == keyset.signing.kid,
        }
        for key in keyset.public
    ]
    return page(request, "keys.html", keys=rows, **base_context(request, who))

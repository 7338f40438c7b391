"""GET /v2/: the API version check (and the first challenge a client sees)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry_proxy.routes.common import API_HEADERS, authorize


async def version_check(request: Request) -> Response:
    await authorize(request)
    return JSONResponse({}, headers=API_HEADERS)

"""GET /v2/_catalog."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authcore.scope import Access
from registry_proxy.routes.common import API_HEADERS, authorize, services
from registry_proxy.routes.pagination import link_header, page_params

CATALOG = Access("registry", "catalog", frozenset({"*"}))
DEFAULT_PAGE = 100
MAX_PAGE = 1000


async def catalog(request: Request) -> Response:
    await authorize(request, CATALOG)
    n, last = page_params(request, DEFAULT_PAGE, MAX_PAGE)
    headers = dict(API_HEADERS)
    if n == 0:
        return JSONResponse({"repositories": []}, headers=headers)
    names, more = await services(request).storage.catalog.list(n, last)
    if more and names and n is not None:
        headers["Link"] = link_header("/v2/_catalog", n, names[-1])
    return JSONResponse({"repositories": names}, headers=headers)

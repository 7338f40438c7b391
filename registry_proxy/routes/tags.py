"""GET /v2/<name>/tags/list."""

from __future__ import annotations

import bisect

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry_proxy.routes.common import API_HEADERS, authorize, pull, repository, services
from registry_proxy.routes.pagination import link_header, page_params

MAX_PAGE = 10_000


async def list_tags(request: Request) -> Response:
    name = repository(request)
    await authorize(request, pull(name))
    n, last = page_params(request, None, MAX_PAGE)
    tags = await services(request).storage.tags.list(name)
    if last is not None:
        tags = tags[bisect.bisect_right(tags, last) :]
    headers = dict(API_HEADERS)
    if n is not None:
        if len(tags) > n and n > 0:
            headers["Link"] = link_header(f"/v2/{name}/tags/list", n, tags[n - 1])
        tags = tags[:n]
    return JSONResponse({"name": name, "tags": tags}, headers=headers)

"""`n`/`last` pagination and the `Link` header shared by tags and catalog."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request

from registry_proxy.errors import RegistryError
from registry_proxy.routes.numbers import bounded_int, is_number

__all__ = ["link_header", "page_params"]


def page_params(
    request: Request, default: int | None, maximum: int
) -> tuple[int | None, str | None]:
    """(page size, last) from the query; a page larger than `maximum` is cut to it."""
    raw_n = request.query_params.get("n")
    last = request.query_params.get("last") or None
    if raw_n is None or raw_n == "":
        return default, last
    if not is_number(raw_n):
        raise RegistryError("PAGINATION_NUMBER_INVALID", {"n": raw_n[:50]})
    return bounded_int(raw_n, maximum), last


def link_header(path: str, n: int, last: str) -> str:
    return f'<{path}?{urlencode({"n": n, "last": last})}>; rel="next"'

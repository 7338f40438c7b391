"""`n`/`last` pagination and the `Link` header shared by tags and catalog."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request

from registry_proxy.errors import RegistryError

__all__ = ["link_header", "page_params"]


def page_params(
    request: Request, default: int | None, maximum: int
) -> tuple[int | None, str | None]:
    raw_n = request.query_params.get("n")
    last = request.query_params.get("last") or None
    if raw_n is None or raw_n == "":
        return default, last
    if not raw_n.isdigit():
        raise RegistryError("PAGINATION_NUMBER_INVALID", {"n": raw_n[:50]})
    return min(int(raw_n), maximum), last


def link_header(path: str, n: int, last: str) -> str:
    return f'<{path}?{urlencode({"n": n, "last": last})}>; rel="next"'

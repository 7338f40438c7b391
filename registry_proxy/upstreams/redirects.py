"""A request and the redirects it meets, followed by hand so credentials stay at home.

Registries send blobs on to a store or a CDN with a signed URL; what they
redirect to is another party. `Authorization` goes only to the upstream's own
origin (scheme, host and port), on the first hop and on any later hop that
comes back there, never elsewhere, so a redirect cannot carry our
credentials to a host the upstream names.
"""

from __future__ import annotations

import httpx

from registry_proxy.upstreams.answers import describe
from registry_proxy.upstreams.errors import UpstreamInvalid

__all__ = ["MAX_REDIRECTS", "Origin", "origin_of", "send_following"]

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


def origin_of(url: httpx.URL) -> Origin:
    return (url.scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(url.scheme, 0))


async def send_following(
    http: httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    headers: dict[str, str],
    *,
    home: Origin,
    authorization: str | None,
) -> httpx.Response:
    """The first answer that is no redirect, opened as a stream (the caller closes it)."""
    for _ in range(MAX_REDIRECTS + 1):
        sent = dict(headers)
        if authorization is not None and origin_of(url) == home:
            sent["Authorization"] = authorization
        response = await http.send(http.build_request(method, url, headers=sent), stream=True)
        if response.status_code not in _REDIRECTS:
            return response
        location = response.headers.get("location")
        await response.aclose()
        url = _next_hop(url, location)
    raise UpstreamInvalid(f"{describe(url)}: more than {MAX_REDIRECTS} redirects")


def _next_hop(url: httpx.URL, location: str | None) -> httpx.URL:
    if not location:
        raise UpstreamInvalid(f"{describe(url)}: a redirect without a Location")
    try:
        target = url.join(location)
    except httpx.InvalidURL:
        raise UpstreamInvalid(f"{describe(url)}: a redirect to no URL") from None
    if target.scheme not in _DEFAULT_PORTS or not target.host or target.userinfo:
        raise UpstreamInvalid(f"{describe(url)}: a redirect to no http(s) URL")
    return target

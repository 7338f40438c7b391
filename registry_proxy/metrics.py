"""Prometheus metrics of one registry app (no global registry: one per app).

Requests are labelled by route template (`/v2/{name}/blobs/{digest}`), never
by raw path or repository name; auth failures by a fixed set of reasons. Body
bytes are counted as the chunks pass (their lengths only: nothing is buffered).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as _generate_latest

from authcore.metric_labels import method_label
from authcore.middleware import Finished

__all__ = [
    "AUTH_FAILURE_REASONS",
    "DURATION_BUCKETS",
    "RegistryMetrics",
    "auth_failure_reason",
]

AUTH_FAILURE_REASONS = ("missing", "malformed", "invalid_token", "insufficient_scope")

# Blob pushes and pulls can take minutes; the default buckets stop at 10 s.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

# A request's counter, duration, bytes-in and bytes-out children.
_Children = tuple[Any, Any, Any, Any]

_CHALLENGE_ERROR = re.compile(r'error="(\w+)"')


def auth_failure_reason(authorization: str | None, challenge: str | None) -> str:
    """Why a 401 was answered, from the request's Authorization and our challenge header.

    `missing`: no credentials; `malformed`: not a usable Bearer header;
    otherwise the challenge's `error` (`invalid_token`, `insufficient_scope`).
    """
    match = _CHALLENGE_ERROR.search(challenge or "")
    if match is not None and match.group(1) in AUTH_FAILURE_REASONS:
        return match.group(1)
    if not authorization or not authorization.strip():
        return "missing"
    return "malformed"


class RegistryMetrics:
    """The registry's request, byte and auth-failure metrics, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["method", "route"]
        counter = functools.partial(Counter, registry=self.registry)
        self._requests = counter(
            "registry_http_requests",
            "HTTP requests by method, route template and status.",
            [*labels, "status"],
        )
        self._request_bytes = counter(
            "registry_http_request_bytes",
            "Request body bytes received, by method and route template.",
            labels,
        )
        self._response_bytes = counter(
            "registry_http_response_bytes",
            "Response body bytes sent, by method and route template.",
            labels,
        )
        self._duration = Histogram(
            "registry_http_request_duration_seconds",
            "HTTP request duration (until the response body was sent), by method and route.",
            labels,
            registry=self.registry,
            buckets=DURATION_BUCKETS,
        )
        self._auth_failures = counter(
            "registry_auth_failures", "Requests answered 401, by reason.", ["reason"]
        )
        # Present at zero from the start; the labelled children are looked up
        # once, not per request (a lookup takes the metric's lock and hashes
        # the labels). Keys are bounded as the labels are.
        self._by_reason = {r: self._auth_failures.labels(r) for r in AUTH_FAILURE_REASONS}
        self._children: dict[tuple[str, str, int], _Children] = {}
        # The upstreams' content, named as the Go registry names its proxy's metrics.
        self._proxy_requests = counter(
            "registry_proxy_requests", "Pulls of an upstream's content, by kind.", ["kind"]
        )
        self._proxy_hits = counter(
            "registry_proxy_hits", "Of those, served from this registry's storage.", ["kind"]
        )
        self._proxy_misses = counter(
            "registry_proxy_misses", "Of those, fetched from the upstream.", ["kind"]
        )
        self._proxy_bytes = counter(
            "registry_proxy_pulled_bytes",
            "Bytes of blobs fetched from each upstream (by its prefix).",
            ["upstream"],
        )

    def observe(self, request: Finished) -> None:
        """Record one finished HTTP request (an observer of the request middleware).

        Byte counts are whole requests, so a long upload shows once it finished (or failed).
        """
        key = (method_label(request.method), request.route, request.status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = self._make_children(*key)
        requests, duration, bytes_in, bytes_out = children
        requests.inc()
        duration.observe(request.seconds)
        if request.bytes_in:
            bytes_in.inc(request.bytes_in)
        if request.bytes_out:
            bytes_out.inc(request.bytes_out)

    def _make_children(self, method: str, route: str, status: int) -> _Children:
        return (
            self._requests.labels(method, route, str(status)),
            self._duration.labels(method, route),
            self._request_bytes.labels(method, route),
            self._response_bytes.labels(method, route),
        )

    def proxy_hit(self, kind: str) -> None:
        """A manifest or blob of an upstream served from storage."""
        self._proxy_requests.labels(kind).inc()
        self._proxy_hits.labels(kind).inc()

    def proxy_miss(self, kind: str) -> None:
        """A manifest or blob of an upstream fetched from it."""
        self._proxy_requests.labels(kind).inc()
        self._proxy_misses.labels(kind).inc()

    def proxy_pulled(self, upstream: str, size: int) -> None:
        self._proxy_bytes.labels(upstream).inc(size)

    def auth_failure(self, reason: str) -> None:
        """Count one 401; `reason` is one of AUTH_FAILURE_REASONS (else ValueError)."""
        if reason not in AUTH_FAILURE_REASONS:
            raise ValueError(f"unknown auth failure reason {reason!r}")
        self._by_reason[reason].inc()

    def render(self) -> tuple[bytes, str]:
        """The text exposition of this app's metrics and its content type."""
        return _generate_latest(self.registry), CONTENT_TYPE_LATEST

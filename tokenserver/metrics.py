"""Prometheus metrics of one token-server app (no global registry: one per app).

Every label value is bounded: outcomes come from fixed sets, HTTP requests are
labelled by route template (`/token`, never a raw path) and a known method.
"""

from __future__ import annotations

import re
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as _generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokenserver.store.audit import TOKEN_OUTCOMES

__all__ = [
    "LOGIN_OUTCOMES",
    "METHODS",
    "TOKEN_OUTCOMES",
    "UNMATCHED",
    "HTTPMetricsMiddleware",
    "TokenMetrics",
    "method_label",
    "route_label",
]

LOGIN_OUTCOMES = ("success", "failure")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"

_CONVERTOR = re.compile(r"\{(\w+):\w+\}")


def method_label(method: str) -> str:
    """The request method, or `OTHER` for anything a client invented."""
    return method if method in METHODS else "OTHER"


def route_label(scope: Scope) -> str:
    """The template of the route the app matched (`/v2/{name}/blobs/{digest}`), or `unmatched`.

    Read after the app ran: the router records the route in the scope it was given.
    """
    path = getattr(scope.get("route"), "path", None)
    if not isinstance(path, str):
        return UNMATCHED
    return _CONVERTOR.sub(r"{\1}", path) if ":" in path else path


class TokenMetrics:
    """The token server's counters and request histogram, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._token_requests = Counter(
            "tokenserver_token_requests",
            "Token requests by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self._logins = Counter(
            "tokenserver_logins",
            "Password checks by authentication backend and outcome.",
            ["backend", "outcome"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "tokenserver_request_duration_seconds",
            "HTTP request duration by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        for outcome in TOKEN_OUTCOMES:
            # Present at zero from the start, so rates work before the first event.
            self._token_requests.labels(outcome)

    def token_request(self, outcome: str) -> None:
        """Count one token request; `outcome` is one of TOKEN_OUTCOMES (else ValueError)."""
        if outcome not in TOKEN_OUTCOMES:
            raise ValueError(f"unknown token request outcome {outcome!r}")
        self._token_requests.labels(outcome).inc()

    def login(self, backend: str, outcome: str) -> None:
        """Count one password check by a backend (its `name`); outcome `success` or `failure`."""
        if outcome not in LOGIN_OUTCOMES:
            raise ValueError(f"unknown login outcome {outcome!r}")
        self._logins.labels(backend, outcome).inc()

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self._duration.labels(method_label(method), route, str(status)).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The text exposition of this app's metrics and its content type."""
        return _generate_latest(self.registry), CONTENT_TYPE_LATEST


class HTTPMetricsMiddleware:
    """Times every HTTP request into `TokenMetrics` (pure ASGI; bodies pass untouched)."""

    def __init__(self, app: ASGIApp, metrics: TokenMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe_request(
                scope["method"], route_label(scope), status, time.perf_counter() - started
            )

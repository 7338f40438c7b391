"""Prometheus metrics of one token-server app (no global registry: one per app).

Every label value is bounded: outcomes come from fixed sets, HTTP requests are
labelled by route template (`/token`, never a raw path) and a known method.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as _generate_latest

from authcore.metric_labels import method_label
from authcore.middleware import Finished
from tokenserver.store.audit import TOKEN_OUTCOMES

__all__ = ["LOGIN_OUTCOMES", "TOKEN_OUTCOMES", "TokenMetrics"]

LOGIN_OUTCOMES = ("success", "failure")


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

    def observe(self, request: Finished) -> None:
        """Time one finished HTTP request (an observer of the request middleware)."""
        labels = (method_label(request.method), request.route, str(request.status))
        self._duration.labels(*labels).observe(request.seconds)

    def render(self) -> tuple[bytes, str]:
        """The text exposition of this app's metrics and its content type."""
        return _generate_latest(self.registry), CONTENT_TYPE_LATEST

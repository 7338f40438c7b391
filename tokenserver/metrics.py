"""Prometheus metrics of one token-server app (no global registry: one per app).

Every label value is bounded: outcomes come from fixed sets, HTTP requests are
labelled by route template (`/token`, never a raw path) and a known method.
"""

from __future__ import annotations

from typing import Any

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
        # Present at zero from the start, so rates work before the first event;
        # the labelled children are looked up once, not per request.
        self._by_outcome: dict[str, Counter] = {
            o: self._token_requests.labels(o) for o in TOKEN_OUTCOMES
        }
        self._login_children: dict[tuple[str, str], Any] = {}
        self._duration_children: dict[tuple[str, str, int], Any] = {}

    def token_request(self, outcome: str) -> None:
        """Count one token request; `outcome` is one of TOKEN_OUTCOMES (else ValueError)."""
        counter = self._by_outcome.get(outcome)
        if counter is None:
            raise ValueError(f"unknown token request outcome {outcome!r}")
        counter.inc()

    def login(self, backend: str, outcome: str) -> None:
        """Count one password check by a backend (its `name`); outcome `success` or `failure`."""
        if outcome not in LOGIN_OUTCOMES:
            raise ValueError(f"unknown login outcome {outcome!r}")
        child = self._login_children.get((backend, outcome))
        if child is None:  # backend names are the configured backends': a handful
            child = self._login_children[backend, outcome] = self._logins.labels(backend, outcome)
        child.inc()

    def observe(self, request: Finished) -> None:
        """Time one finished HTTP request (an observer of the request middleware)."""
        # Bounded as the labels are: known methods, route templates, statuses.
        key = (method_label(request.method), request.route, request.status)
        child = self._duration_children.get(key)
        if child is None:
            child = self._duration_children[key] = self._duration.labels(
                key[0], key[1], str(key[2])
            )
        child.observe(request.seconds)

    def render(self) -> tuple[bytes, str]:
        """The text exposition of this app's metrics and its content type."""
        return _generate_latest(self.registry), CONTENT_TYPE_LATEST

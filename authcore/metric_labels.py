"""Bounded label values for HTTP metrics: a known method, a route template, never a raw path."""

from __future__ import annotations

import re

from starlette.types import Scope

__all__ = ["METHODS", "UNMATCHED", "method_label", "route_label"]

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

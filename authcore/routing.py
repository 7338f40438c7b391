"""The methods a request's path takes, asked of an app's own routes: `Allow` of a 405.

Starlette answers 405 from the first route whose path matches and lists only
that route's methods; a path served by several routes (one per method) needs
them all. Each method is put to the routes as routing itself would, so nested
routers count without knowing how a framework nests them.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import Scope

__all__ = ["allow_header", "allowed_methods"]

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route would fully match for this request's path."""
    return [
        method
        for method in METHODS
        if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in routes)
    ]


def allow_header(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """`Allow` for refusing this request's method: what the path takes, less that method."""
    refused = scope.get("method")
    return ", ".join(m for m in allowed_methods(routes, scope) if m != refused)

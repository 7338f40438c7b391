"""The one way a route reaches the token server's services."""

from __future__ import annotations

from fastapi import Request

from tokenserver.services import Services

__all__ = ["services"]


def services(request: Request) -> Services:
    """What the app's lifespan opened (`tokenserver.services`)."""
    svc: Services = request.app.state.services
    return svc

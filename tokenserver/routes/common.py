"""The one way a route reaches the token server's services, and the OAuth2 form body."""

from __future__ import annotations

from fastapi import Request

from tokenserver.bodies import read_limited
from tokenserver.errors import InvalidRequest
from tokenserver.forms import Params, parse_params
from tokenserver.services import Services

__all__ = ["read_form", "services"]


def services(request: Request) -> Services:
    """What the app's lifespan opened (`tokenserver.services`)."""
    svc: Services = request.app.state.services
    return svc


async def read_form(request: Request) -> Params:
    """An OAuth2 endpoint's form body (POST /token, /device/code), within the size limit."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/x-www-form-urlencoded":
        raise InvalidRequest("the body must be application/x-www-form-urlencoded", close=True)
    limit = services(request).config.server.max_body_bytes
    return parse_params(await read_limited(request, limit))

"""Who may use the admin API: members of the `admin` group, checked before any body is read.

A caller proves itself with its password (HTTP Basic, throttled like any
login) or with a token of this server's own issuer granting `admin:api:*`.
A token is honoured only while its subject still exists, is enabled and is in
the `admin` group, asked of the backends on every call. Every refusal leaves
an audit row naming the act that was attempted.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.types import Message

from authcore.claims import access_from_claims
from authcore.jwt_verify import LEEWAY, UntrustedJWT, by_kid, verify_jwt
from tokenserver.audit import Actor, Outcome
from tokenserver.authn.base import BackendUnavailable
from tokenserver.authz.policy import ADMIN_GROUP
from tokenserver.bodies import has_body, read_limited
from tokenserver.errors import (
    AdminUnauthorized,
    Forbidden,
    TemporarilyUnavailable,
    TokenServerError,
    TooManyRequests,
    from_refusal,
)
from tokenserver.forms import parse_basic
from tokenserver.refusals import Refused
from tokenserver.routes.common import services

__all__ = ["ADMIN_SCOPE", "REALM", "Admin", "AdminRoute"]

ADMIN_SCOPE = "admin:api:*"
REALM = "tokenserver-admin"


def _client(request: Request) -> tuple[str, str]:
    ip = request.client.host if request.client else ""
    return ip, request.headers.get("user-agent", "")[:512]


def _bearer_claims(request: Request, token: str) -> dict[str, Any]:
    """The claims of a token our own issuer signed for one of our services, valid now."""
    svc = services(request)
    try:
        signed = verify_jwt(
            token,
            by_kid({k.kid: k.key for k in svc.keys.public}),
            issuer=svc.config.token.issuer,
            audience=svc.config.token.services,
            leeway=LEEWAY,
            # The server's clock (a test can move it).
            now=svc.clock().timestamp(),
            require=("sub",),
        )
    except UntrustedJWT:
        raise AdminUnauthorized("the token is invalid or expired", REALM) from None
    return signed.claims


def _bearer_actor(request: Request, token: str) -> Actor:
    """Blocking (asks the identity backends)."""
    claims = _bearer_claims(request, token)
    subject = claims["sub"]
    try:
        access = access_from_claims(claims.get("access", []))
    except ValueError:
        raise AdminUnauthorized("the token is invalid or expired", REALM) from None
    if not isinstance(subject, str) or not subject:
        raise AdminUnauthorized("the token is invalid or expired", REALM)
    if not any(a.type == "admin" and a.name == "api" and a.allows("*") for a in access):
        raise Forbidden(f"the token does not grant {ADMIN_SCOPE}")
    try:
        found = services(request).authenticator.find(subject)
    except BackendUnavailable:
        raise TemporarilyUnavailable("the identity backend is unavailable; retry") from None
    if found is None:
        raise AdminUnauthorized("the token's account no longer exists or is disabled", REALM)
    backend, account = found
    if ADMIN_GROUP not in account.groups:
        raise Forbidden(f"{subject} is no longer in the {ADMIN_GROUP} group")
    ip, agent = _client(request)
    return Actor(account.name, "bearer", "user", backend, ip, agent)


async def authenticate(request: Request) -> Actor:
    header = request.headers.get("authorization")
    if header is None:
        raise AdminUnauthorized("credentials are required", REALM)
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return await run_in_threadpool(_bearer_actor, request, value.strip())
    if scheme.lower() != "basic":
        raise AdminUnauthorized("use Basic or Bearer credentials", REALM)
    username, password = parse_basic(header)
    ip, agent = _client(request)
    try:
        identity = await services(request).grants.authenticate(username, password, ip)
    except Refused as exc:
        raise from_refusal(exc, "admin", REALM) from None
    # A personal token (a limited identity) never administers: its scopes hold no admin one.
    if identity.kind != "user" or identity.limit is not None or ADMIN_GROUP not in identity.groups:
        raise Forbidden(f"only members of the {ADMIN_GROUP} group may use the admin API")
    return Actor(identity.subject, "basic", "user", identity.backend, ip, agent)


def _claimed(request: Request) -> tuple[str, str]:
    """(subject the caller claimed, scheme) of a refused call, for its audit row; never verified."""
    header = request.headers.get("authorization")
    if header is None:
        return "", "none"
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return "", scheme.lower()[:32]
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return "", "basic"
    return decoded.partition(":")[0], "basic"


def _refusal_outcome(exc: TokenServerError) -> Outcome:
    if isinstance(exc, Forbidden):
        return "forbidden"
    if isinstance(exc, TooManyRequests):
        return "throttled"
    if isinstance(exc, TemporarilyUnavailable):
        return "backend_unavailable"
    if isinstance(exc, AdminUnauthorized):
        return "bad_credentials"
    return "invalid_request"


class AdminRoute(APIRoute):
    """An admin endpoint: authenticate, then read at most `server.max_body_bytes`, then run it.

    FastAPI reads a body before it solves dependencies; checking here first
    means an anonymous client is refused without being read at all. The
    route's `name` is the act its audit rows record (`user.create`, ...).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        action = self.name

        async def guarded(request: Request) -> Response:
            try:
                actor = await authenticate(request)
            except TokenServerError as exc:
                _record_refusal(request, action, exc)
                exc.close = exc.close or has_body(request)
                raise
            request.state.admin = actor
            if not has_body(request):
                return await handler(request)
            limit = services(request).config.server.max_body_bytes
            return await handler(_replaying(request, await read_limited(request, limit)))

        return guarded


def _record_refusal(request: Request, action: str, exc: TokenServerError) -> None:
    subject, via = _claimed(request)
    ip, agent = _client(request)
    target = "/".join(str(v) for v in request.path_params.values()) or request.query_params.get(
        "user", ""
    )
    svc = services(request)
    actor = Actor(subject[:255], via, "", "", ip, agent)
    svc.audit.record(actor.record(svc.clock(), action, target, _refusal_outcome(exc)))


def _replaying(request: Request, body: bytes) -> Request:
    """The same request, its body already read, handed to FastAPI's body parsing."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await request.receive()

    return Request(request.scope, receive)


def current_admin(request: Request) -> Actor:
    actor: Actor = request.state.admin
    return actor


Admin = Annotated[Actor, Depends(current_admin)]

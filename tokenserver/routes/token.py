"""GET /token (registry token spec) and POST /token (its OAuth2 variant).

Each request, whatever its fate, leaves one audit record and one metrics
count; `_audited` fills both from the draft the handler keeps up to date.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tokenserver.audit import AuditLog
from tokenserver.authn.base import BadCredentials, Identity
from tokenserver.bodies import read_limited
from tokenserver.errors import (
    InvalidGrant,
    InvalidRequest,
    TemporarilyUnavailable,
    TokenEndpointError,
    TooManyRequests,
    Unauthorized,
    UnsupportedGrantType,
)
from tokenserver.forms import Params, parse_basic, parse_params
from tokenserver.grants import GrantService
from tokenserver.issuer import IssuedToken
from tokenserver.scope import Access, format_scopes
from tokenserver.store.audit import AuditRecord, Outcome

__all__ = ["router"]

router = APIRouter()

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _grants(request: Request) -> GrantService:
    grants: GrantService = request.app.state.grants
    return grants


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


@dataclass
class _Draft:
    """What is known so far about one token request, for its audit record."""

    service: str = ""
    via: str = ""
    subject: str = ""
    identity: Identity | None = None
    requested: tuple[Access, ...] = ()
    granted: tuple[Access, ...] | None = None


def _outcome(draft: _Draft, error: TokenEndpointError | None) -> Outcome:
    if isinstance(error, TooManyRequests):
        return "throttled"
    if isinstance(error, TemporarilyUnavailable):
        return "backend_unavailable"
    if isinstance(error, Unauthorized | InvalidGrant):
        return "bad_credentials"
    if error is not None or draft.granted is None:
        return "invalid_request"
    wanted = {(a.type, a.name): a.actions for a in draft.requested}
    got = {(a.type, a.name): a.actions for a in draft.granted}
    if wanted and not got:
        return "denied"
    if any(got.get(key) != actions for key, actions in wanted.items()):
        return "partial"
    return "granted"


async def _audited(
    request: Request, handler: Callable[[Request, _Draft], Awaitable[JSONResponse]]
) -> JSONResponse:
    draft = _Draft()
    error: TokenEndpointError | None = None
    try:
        return await handler(request, draft)
    except TokenEndpointError as exc:
        error = exc
        raise
    finally:
        outcome = _outcome(draft, error)
        identity = draft.identity
        audit: AuditLog = request.app.state.audit
        grants = _grants(request)
        grants.metrics.token_request(outcome)
        audit.record(
            AuditRecord(
                at=grants.clock(),
                subject=identity.subject if identity else draft.subject,
                kind=identity.kind if identity else "",
                backend=identity.backend if identity else "",
                via=draft.via,
                client_ip=client_ip(request) or "",
                user_agent=request.headers.get("user-agent", ""),
                service=draft.service,
                requested=format_scopes(draft.requested),
                granted=format_scopes(draft.granted or ()),
                outcome=outcome,
            )
        )


def _answer(token: IssuedToken, refresh_token: str | None, *, oauth: bool) -> JSONResponse:
    body: dict[str, Any] = {
        "token": token.token,
        "access_token": token.token,
        "token_type": "Bearer",
        "expires_in": token.expires_in,
        "issued_at": token.issued_at_rfc3339,
    }
    if oauth:
        body["scope"] = format_scopes(token.claims.access)
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    return JSONResponse(body, headers=_NO_STORE)


@router.get("/token", summary="Registry token (Docker token-auth spec)")
async def get_token(request: Request) -> JSONResponse:
    return await _audited(request, _get_token)


async def _get_token(request: Request, draft: _Draft) -> JSONResponse:
    grants = _grants(request)
    params = parse_params(request.scope.get("query_string", b""))
    draft.service = grants.check_service(params.required("service"))
    draft.requested = grants.parse_requested(params.all("scope"))
    offline = (params.one("offline_token") or "").lower() == "true"
    account = params.one("account")
    ip = client_ip(request)

    header = request.headers.get("authorization")
    if header is None:
        draft.via = "anonymous"
        identity = Identity.anonymous()
    else:
        draft.via = "basic"
        username, password = parse_basic(header)
        draft.subject = username
        try:
            identity = await run_in_threadpool(grants.authenticate, username, password, ip)
        except BadCredentials:
            raise Unauthorized("invalid username or password", realm=grants.issuer_name) from None
    draft.identity = identity
    # Clients send the name as typed; the subject is the backend's own spelling of it.
    if account and account not in (identity.subject, draft.subject):
        raise InvalidRequest("account does not match the authenticated user")
    if offline and identity.kind == "anonymous":
        raise Unauthorized("offline tokens need credentials", realm=grants.issuer_name)

    token = grants.grant(identity, draft.service, draft.requested, via=draft.via, ip=ip)
    draft.granted = token.claims.access
    refresh = None
    # A CI token is the long-lived credential itself: no refresh token on top.
    if offline and identity.kind == "user":
        client_id = params.one("client_id") or ""
        refresh = await run_in_threadpool(
            grants.new_refresh_token, identity, draft.service, client_id
        )
    return _answer(token, refresh, oauth=False)


async def _read_form(request: Request) -> Params:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/x-www-form-urlencoded":
        raise InvalidRequest("the body must be application/x-www-form-urlencoded", close=True)
    limit: int = request.app.state.config.server.max_body_bytes
    return parse_params(await read_limited(request, limit))


@router.post("/token", summary="OAuth2 token (password and refresh_token grants)")
async def post_token(request: Request) -> JSONResponse:
    return await _audited(request, _post_token)


async def _post_token(request: Request, draft: _Draft) -> JSONResponse:
    grants = _grants(request)
    form = await _read_form(request)
    grant_type = form.required("grant_type")
    draft.service = grants.check_service(form.required("service"))
    client_id = form.required("client_id")
    draft.requested = grants.parse_requested(form.all("scope"))
    ip = client_ip(request)

    if grant_type == "password":
        draft.via = "password"
        username = form.required("username")
        draft.subject = username
        password = form.secret("password")
        if password is None:
            raise InvalidRequest("parameter 'password' is required")
        try:
            identity = await run_in_threadpool(grants.authenticate, username, password, ip)
        except BadCredentials:
            raise InvalidGrant("invalid username or password") from None
        draft.identity = identity
        token = grants.grant(identity, draft.service, draft.requested, via="password", ip=ip)
        draft.granted = token.claims.access
        refresh = None
        if (form.one("access_type") or "").lower() == "offline" and identity.kind == "user":
            refresh = await run_in_threadpool(
                grants.new_refresh_token, identity, draft.service, client_id
            )
        return _answer(token, refresh, oauth=True)

    if grant_type == "refresh_token":
        draft.via = "refresh_token"
        value = form.secret("refresh_token")
        if not value:
            raise InvalidRequest("parameter 'refresh_token' is required")
        identity = await run_in_threadpool(grants.identity_for_refresh, value, draft.service)
        draft.identity = identity
        token = grants.grant(identity, draft.service, draft.requested, via="refresh_token", ip=ip)
        draft.granted = token.claims.access
        return _answer(token, value.reveal(), oauth=True)

    raise UnsupportedGrantType("grant_type must be password or refresh_token")

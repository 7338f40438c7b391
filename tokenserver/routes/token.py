"""GET /token (registry token spec) and POST /token (its OAuth2 variant)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tokenserver.authn.base import BadCredentials, Identity
from tokenserver.errors import (
    InvalidGrant,
    InvalidRequest,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedGrantType,
)
from tokenserver.forms import Params, parse_basic, parse_params
from tokenserver.grants import GrantService
from tokenserver.issuer import IssuedToken
from tokenserver.scope import format_scopes

__all__ = ["router"]

router = APIRouter()

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _grants(request: Request) -> GrantService:
    grants: GrantService = request.app.state.grants
    return grants


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


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
    grants = _grants(request)
    params = parse_params(request.scope.get("query_string", b""))
    service = grants.check_service(params.required("service"))
    requested = grants.parse_requested(params.all("scope"))
    offline = (params.one("offline_token") or "").lower() == "true"
    account = params.one("account")

    header = request.headers.get("authorization")
    if header is None:
        identity = Identity.anonymous()
    else:
        username, password = parse_basic(header)
        try:
            identity = await run_in_threadpool(grants.authenticate, username, password)
        except BadCredentials:
            raise Unauthorized("invalid username or password", realm=grants.issuer_name) from None
    if account and account != identity.subject:
        raise InvalidRequest("account does not match the authenticated user")
    if offline and identity.kind == "anonymous":
        raise Unauthorized("offline tokens need credentials", realm=grants.issuer_name)

    via = "anonymous" if header is None else "basic"
    token = grants.grant(identity, service, requested, via=via, ip=_client_ip(request))
    refresh = None
    if offline:
        client_id = params.one("client_id") or ""
        refresh = await run_in_threadpool(grants.new_refresh_token, identity, service, client_id)
    return _answer(token, refresh, oauth=False)


async def _read_form(request: Request) -> Params:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/x-www-form-urlencoded":
        raise InvalidRequest("the body must be application/x-www-form-urlencoded")
    limit: int = request.app.state.config.server.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body exceeds {limit} bytes")
    body = bytearray()
    # Chunked bodies carry no length; count as they arrive.
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the body exceeds {limit} bytes")
    return parse_params(bytes(body))


@router.post("/token", summary="OAuth2 token (password and refresh_token grants)")
async def post_token(request: Request) -> JSONResponse:
    grants = _grants(request)
    form = await _read_form(request)
    grant_type = form.required("grant_type")
    service = grants.check_service(form.required("service"))
    client_id = form.required("client_id")
    requested = grants.parse_requested(form.all("scope"))

    if grant_type == "password":
        username = form.required("username")
        password = form.secret("password")
        if password is None:
            raise InvalidRequest("parameter 'password' is required")
        try:
            identity = await run_in_threadpool(grants.authenticate, username, password)
        except BadCredentials:
            raise InvalidGrant("invalid username or password") from None
        token = grants.grant(identity, service, requested, via="password", ip=_client_ip(request))
        refresh = None
        if (form.one("access_type") or "").lower() == "offline":
            refresh = await run_in_threadpool(
                grants.new_refresh_token, identity, service, client_id
            )
        return _answer(token, refresh, oauth=True)

    if grant_type == "refresh_token":
        value = form.secret("refresh_token")
        if not value:
            raise InvalidRequest("parameter 'refresh_token' is required")
        identity = await run_in_threadpool(grants.identity_for_refresh, value, service)
        token = grants.grant(
            identity, service, requested, via="refresh_token", ip=_client_ip(request)
        )
        return _answer(token, value.reveal(), oauth=True)

    raise UnsupportedGrantType("grant_type must be password or refresh_token")

"""GET /token (registry token spec) and POST /token (its OAuth2 variant): parse, grant, answer.

What a request means is `grants.GrantService.grant`; here is only how each
flavour of the protocol spells the request and wants the answer.

GET /token is what every push and pull asks first, so `TokenApp` takes it
straight to `get_token`, past the framework's middleware, routing and
dependency solving; its answers and refusals are the same ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from authcore.middleware import Observer, RequestMiddleware
from authcore.scope import format_scopes
from tokenserver import context
from tokenserver.bodies import read_limited
from tokenserver.errors import (
    InvalidRequest,
    TokenServerError,
    UnsupportedGrantType,
    from_refusal,
)
from tokenserver.forms import Params, parse_basic, parse_params
from tokenserver.grants import Grant
from tokenserver.refusals import Refused
from tokenserver.routes.common import services
from tokenserver.token_requests import (
    ExchangeLogin,
    PasswordLogin,
    RefreshLogin,
    TokenRequest,
    Via,
)

__all__ = ["TokenApp", "router"]

router = APIRouter()

# A token answer is JSON and never cached (RFC 6749 §5.1).
_ANSWER_HEADERS = (
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
)


class TokenAnswer(Response):
    """A granted token's JSON, with the headers of every token answer built once."""

    media_type = "application/json"

    def __init__(self, body: str) -> None:
        super().__init__(body.encode("utf-8"))

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        self.raw_headers = [(b"content-length", b"%d" % len(self.body)), *_ANSWER_HEADERS]


def _client(request: Request) -> tuple[str | None, str]:
    ip = request.client.host if request.client else None
    context.CLIENT_IP.set(ip or "")
    return ip, request.headers.get("user-agent", "")


async def _grant(request: Request, token_request: TokenRequest, *, oauth: bool) -> TokenAnswer:
    try:
        grant = await services(request).grants.grant(token_request)
    except Refused as exc:
        realm = services(request).config.token.issuer
        raise from_refusal(exc, "oauth" if oauth else "token", realm) from None
    return _answer(grant, oauth=oauth, exchange=token_request.via == "token_exchange")


def _answer(grant: Grant, *, oauth: bool, exchange: bool = False) -> TokenAnswer:
    # Spelt out, every string quoted by the json module: the warm path's answer
    # costs a join, not an encoder built and walked per request.
    token = grant.token
    value = _quote(token.token)
    parts = [
        f'{{"token":{value},"access_token":{value},"token_type":"Bearer",'
        f'"expires_in":{token.expires_in:d},"issued_at":{_quote(token.issued_at_rfc3339)}'
    ]
    if oauth:
        parts.append(',"scope":' + _quote(format_scopes(token.claims.access)))
    if exchange:
        parts.append(',"issued_token_type":' + _quote(ISSUED_TOKEN_TYPE))
    if grant.refresh_token is not None:
        parts.append(',"refresh_token":' + _quote(grant.refresh_token))
    parts.append("}")
    return TokenAnswer("".join(parts))


def _unparsed(request: Request, via: Via, service: str, subject: str = "") -> None:
    ip, agent = _client(request)
    services(request).grants.refuse_unparsed(via, service, ip, agent, subject)


@router.get("/token", summary="Registry token (Docker token-auth spec)")
async def get_token(request: Request) -> TokenAnswer:
    header = request.headers.get("authorization")
    via: Via = "anonymous" if header is None else "basic"
    try:
        params = parse_params(request.scope.get("query_string", b""))
        service = params.required("service")
        credentials = None if header is None else PasswordLogin(*parse_basic(header))
        token_request = TokenRequest(
            service=service,
            scopes=params.all("scope"),
            via=via,
            credentials=credentials,
            offline=(params.one("offline_token") or "").lower() == "true",
            client_id=params.one("client_id") or "",
            account=params.one("account"),
            client_ip=_client(request)[0],
            user_agent=request.headers.get("user-agent", ""),
        )
    except TokenServerError:
        _unparsed(request, via, "")
        raise
    return await _grant(request, token_request, oauth=False)


async def _read_form(request: Request) -> Params:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/x-www-form-urlencoded":
        raise InvalidRequest("the body must be application/x-www-form-urlencoded", close=True)
    limit = services(request).config.server.max_body_bytes
    return parse_params(await read_limited(request, limit))


TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 (a name)
# RFC 8693 §3: what a subject token may be; an OIDC ID token is both.
_SUBJECT_TOKEN_TYPES = frozenset(
    {"urn:ietf:params:oauth:token-type:id_token", "urn:ietf:params:oauth:token-type:jwt"}
)
ISSUED_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 (a name)


def _oauth_credentials(form: Params) -> tuple[Via, PasswordLogin | RefreshLogin | ExchangeLogin]:
    grant_type = form.required("grant_type")
    if grant_type == TOKEN_EXCHANGE:
        subject_token = form.secret("subject_token")
        if not subject_token:
            raise InvalidRequest("parameter 'subject_token' is required")
        if form.required("subject_token_type") not in _SUBJECT_TOKEN_TYPES:
            raise InvalidRequest("subject_token_type must be an id_token or a jwt")
        if form.one("actor_token") is not None:
            raise InvalidRequest("delegation (actor_token) is not supported")
        return "token_exchange", ExchangeLogin(subject_token)
    if grant_type == "password":
        username = form.required("username")
        password = form.secret("password")
        if password is None:
            raise InvalidRequest("parameter 'password' is required")
        return "password", PasswordLogin(username, password)
    if grant_type == "refresh_token":
        value = form.secret("refresh_token")
        if not value:
            raise InvalidRequest("parameter 'refresh_token' is required")
        return "refresh_token", RefreshLogin(value)
    raise UnsupportedGrantType(f"grant_type must be password, refresh_token or {TOKEN_EXCHANGE}")


@router.post(
    "/token", summary="OAuth2 token (password, refresh_token and RFC 8693 token-exchange grants)"
)
async def post_token(request: Request) -> TokenAnswer:
    via: Via = "anonymous"
    service = ""
    try:
        form = await _read_form(request)
        service = form.one("service") or ""
        via, credentials = _oauth_credentials(form)
        token_request = TokenRequest(
            service=form.required("service"),
            scopes=form.all("scope"),
            via=via,
            credentials=credentials,
            offline=(form.one("access_type") or "").lower() == "offline",
            # An exchange needs no client id (RFC 8693 §2.1); the other grants do.
            client_id=form.one("client_id") or ""
            if via == "token_exchange"
            else form.required("client_id"),
            client_ip=_client(request)[0],
            user_agent=request.headers.get("user-agent", ""),
        )
    except TokenServerError:
        _unparsed(request, via, service)
        raise
    return await _grant(request, token_request, oauth=True)


class TokenApp(FastAPI):
    """The token server's application: GET /token straight to `get_token`, the rest as usual.

    Every request passes `RequestMiddleware` first (context, access line,
    metrics). GET /token then skips the framework's middleware stack,
    routing and dependency solving (together the largest share of the warm
    path after signing); refusals go to the app's own handler for them, so
    they are answered as the router would have answered them, and the
    request is labelled with the route, for the metrics, as the router would
    have labelled it. The route stays in the router for the API schema.
    """

    def __init__(self, *, observers: Sequence[Observer] = (), **options: Any) -> None:
        super().__init__(**options)
        self._front = RequestMiddleware(
            self._dispatch, logger="tokenserver.access", observers=observers
        )
        self._route: BaseRoute | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._front(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/token" or scope["method"] != "GET":
            await super().__call__(scope, receive, send)
            return
        if self._route is None:
            self._route = next(
                r
                for r in router.routes
                if isinstance(r, Route) and r.path == "/token" and "GET" in (r.methods or ())
            )
        scope["app"] = self
        scope["route"] = self._route
        request = Request(scope, receive)
        response: Response
        try:
            response = await get_token(request)
        except TokenServerError as exc:
            answer = self.exception_handlers[TokenServerError](request, exc)
            response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, send)

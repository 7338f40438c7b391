"""GET /token (registry token spec) and POST /token (its OAuth2 variant): parse, grant, answer.

What a request means is `grants.GrantService.grant`; here is only how each
flavour of the protocol spells the request and wants the answer. GET /token
is the warm path: `fast_path.TokenApp` calls `get_token` directly, and the
answer is spelt by `fast_path.token_answer`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from authcore.scope import format_scopes
from tokenserver import context
from tokenserver.errors import (
    InvalidRequest,
    TokenServerError,
    UnsupportedGrantType,
    from_refusal,
)
from tokenserver.fast_path import TokenAnswer, token_answer
from tokenserver.forms import Params, parse_basic, parse_params
from tokenserver.grants import Grant
from tokenserver.refusals import Refused
from tokenserver.routes.common import read_form, services
from tokenserver.token_requests import (
    DeviceLogin,
    ExchangeLogin,
    PasswordLogin,
    RefreshLogin,
    TokenRequest,
    Via,
)

__all__ = ["router"]

router = APIRouter()


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
    token = grant.token
    extra: list[tuple[str, str]] = []
    if oauth:
        extra.append(("scope", format_scopes(token.claims.access)))
    if exchange:
        extra.append(("issued_token_type", ISSUED_TOKEN_TYPE))
    if grant.refresh_token is not None:
        extra.append(("refresh_token", grant.refresh_token))
    return token_answer(token.token, token.expires_in, token.issued_at_rfc3339, extra)


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


TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 (a name)
# RFC 8693 §3: what a subject token may be; an OIDC ID token is both.
_SUBJECT_TOKEN_TYPES = frozenset(
    {"urn:ietf:params:oauth:token-type:id_token", "urn:ietf:params:oauth:token-type:jwt"}
)
ISSUED_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 (a name)
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
_Credentials = PasswordLogin | RefreshLogin | ExchangeLogin | DeviceLogin


def _oauth_credentials(form: Params) -> tuple[Via, _Credentials]:
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
    if grant_type == DEVICE_CODE:
        device_code = form.secret("device_code")
        if not device_code:
            raise InvalidRequest("parameter 'device_code' is required")
        return "device_code", DeviceLogin(device_code)
    raise UnsupportedGrantType(
        f"grant_type must be password, refresh_token, {TOKEN_EXCHANGE} or {DEVICE_CODE}"
    )


@router.post(
    "/token",
    summary="OAuth2 token (password, refresh_token, RFC 8693 token-exchange and RFC 8628"
    " device_code grants)",
)
async def post_token(request: Request) -> TokenAnswer:
    via: Via = "anonymous"
    service = ""
    try:
        form = await read_form(request)
        service = form.one("service") or ""
        via, credentials = _oauth_credentials(form)
        device = via == "device_code"
        token_request = TokenRequest(
            # A device's code names its service (RFC 8628 clients send none).
            service=service if device else form.required("service"),
            scopes=form.all("scope"),
            via=via,
            credentials=credentials,
            # What a device logs in for is the refresh token.
            offline=device or (form.one("access_type") or "").lower() == "offline",
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

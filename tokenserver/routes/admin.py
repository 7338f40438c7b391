"""The admin API under /admin/v1: users, CI tokens, refresh tokens, the audit trail.

Only members of the `admin` group (from any backend) get in: with their
password (HTTP Basic, throttled like any login) or with a token from this
server's own issuer granting `admin:api:*`. Everything else is 401 or 403 in
the same JSON shape as the token endpoint's errors.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import jwt
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from tokenserver.authn.base import BadCredentials, Identity
from tokenserver.authz.policy import ADMIN_GROUP
from tokenserver.authz.scope_limit import ScopeLimit, ScopePatternError
from tokenserver.claims import access_from_claims
from tokenserver.errors import (
    AdminUnauthorized,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
)
from tokenserver.forms import parse_basic
from tokenserver.grants import GrantService
from tokenserver.keys import KeySet
from tokenserver.passwords import PasswordRejected, hash_password
from tokenserver.routes.token import client_ip
from tokenserver.store.audit import OUTCOMES, AuditRecord, AuditStore, Outcome
from tokenserver.store.ci_tokens import CITokenExists, CITokenInfo, CITokenStore
from tokenserver.store.refresh_tokens import RefreshTokenInfo, RefreshTokenStore
from tokenserver.store.users import InvalidName, UserExists, UserInfo, UserNotFound, UserStore

__all__ = ["ADMIN_SCOPE", "router"]

ADMIN_SCOPE = "admin:api:*"
REALM = "tokenserver-admin"
_ALGORITHMS = ["ES256", "ES384", "ES512", "RS256", "RS384", "RS512"]


class ErrorBody(BaseModel):
    """Every refusal, as the token endpoint's errors (RFC 6749 §5.2 and `details`)."""

    error: str
    error_description: str
    details: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "malformed request or refused value"},
    401: {"model": ErrorBody, "description": "no or bad credentials"},
    403: {"model": ErrorBody, "description": "not a member of the admin group"},
    404: {"model": ErrorBody, "description": "no such user or token"},
    409: {"model": ErrorBody, "description": "the name is taken"},
    429: {"model": ErrorBody, "description": "too many failed logins"},
    503: {"model": ErrorBody, "description": "an identity backend is unavailable"},
}


def _grants(request: Request) -> GrantService:
    grants: GrantService = request.app.state.grants
    return grants


def _bearer_identity(request: Request, token: str) -> Identity:
    grants = _grants(request)
    keys: KeySet = request.app.state.keys
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        (key,) = [k for k in keys.public if k.kid == kid]
        claims = jwt.decode(
            token,
            key.key,
            algorithms=_ALGORITHMS,
            audience=sorted(grants.services),
            issuer=grants.issuer_name,
            # Time is checked below against the server's clock (a test can move it).
            options={"require": ["exp", "iss", "aud", "sub"], "verify_exp": False},
        )
        access = access_from_claims(claims.get("access", []))
        now = grants.clock().timestamp()
        if not float(claims["exp"]) > now >= float(claims.get("nbf", 0)) - 60:
            raise ValueError("expired or not yet valid")
    except (jwt.PyJWTError, ValueError, TypeError):
        raise AdminUnauthorized("the token is invalid or expired", REALM) from None
    if not any(a.type == "admin" and a.name == "api" and a.allows("*") for a in access):
        raise Forbidden(f"the token does not grant {ADMIN_SCOPE}")
    return Identity(str(claims["sub"]), "user", frozenset({ADMIN_GROUP}), "token")


async def require_admin(request: Request) -> Identity:
    header = request.headers.get("authorization")
    if header is None:
        raise AdminUnauthorized("credentials are required", REALM)
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return _bearer_identity(request, value.strip())
    if scheme.lower() != "basic":
        raise AdminUnauthorized("use Basic or Bearer credentials", REALM)
    username, password = parse_basic(header)
    grants = _grants(request)
    try:
        identity = await run_in_threadpool(
            grants.authenticate, username, password, client_ip(request)
        )
    except BadCredentials:
        raise AdminUnauthorized("invalid username or password", REALM) from None
    if identity.kind != "user" or ADMIN_GROUP not in identity.groups:
        raise Forbidden(f"only members of the {ADMIN_GROUP} group may use the admin API")
    return identity


Admin = Annotated[Identity, Depends(require_admin)]

router = APIRouter(prefix="/admin/v1", tags=["admin"], responses=_ERRORS)


def _users(request: Request) -> UserStore:
    users: UserStore = request.app.state.users
    return users


def _now(request: Request) -> dt.datetime:
    return _grants(request).clock()


# -- users ----------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserOut(BaseModel):
    name: str
    groups: list[str]
    disabled: bool


class UserCreate(_Body):
    name: str = Field(min_length=1, max_length=255)
    password: str = Field(min_length=1, max_length=1024)
    groups: list[str] = Field(default_factory=list, max_length=100)


class PasswordIn(_Body):
    password: str = Field(min_length=1, max_length=1024)


class GroupsIn(_Body):
    groups: list[str] = Field(max_length=100)


class DisabledIn(_Body):
    disabled: bool


def _user_out(user: UserInfo) -> UserOut:
    return UserOut(name=user.name, groups=list(user.groups), disabled=user.disabled)


def _hash(password: str) -> str:
    try:
        return hash_password(password)
    except PasswordRejected as exc:
        raise InvalidRequest(str(exc)) from None


def _get_user(users: UserStore, name: str) -> UserInfo:
    user = users.get(name)
    if user is None:
        raise NotFound(f"no user {name}")
    return user


@router.get("/users", response_model=list[UserOut], summary="List the database's users")
async def list_users(request: Request, _admin: Admin) -> list[UserOut]:
    users = await run_in_threadpool(_users(request).list)
    return [_user_out(u) for u in users]


@router.post("/users", response_model=UserOut, status_code=201, summary="Create a user")
async def create_user(request: Request, body: UserCreate, _admin: Admin) -> UserOut:
    users = _users(request)

    def create() -> UserInfo:
        try:
            users.add(body.name, _hash(body.password), body.groups)
        except UserExists:
            raise Conflict(f"user {body.name} already exists") from None
        except InvalidName as exc:
            raise InvalidRequest(str(exc)) from None
        return _get_user(users, body.name)

    return _user_out(await run_in_threadpool(create))


@router.get("/users/{name}", response_model=UserOut, summary="One user")
async def get_user(request: Request, name: str, _admin: Admin) -> UserOut:
    return _user_out(await run_in_threadpool(_get_user, _users(request), name))


@router.put("/users/{name}/password", status_code=204, summary="Set a password")
async def set_password(request: Request, name: str, body: PasswordIn, _admin: Admin) -> Response:
    users, now = _users(request), _now(request)
    refresh = RefreshTokenStore(request.app.state.db)

    def change() -> None:
        try:
            users.set_password(name, _hash(body.password))
        except UserNotFound:
            raise NotFound(f"no user {name}") from None
        # A new password ends every session the old one opened.
        refresh.revoke_subject(name, now)

    await run_in_threadpool(change)
    return Response(status_code=204)


@router.put("/users/{name}/groups", response_model=UserOut, summary="Replace a user's groups")
async def set_groups(request: Request, name: str, body: GroupsIn, _admin: Admin) -> UserOut:
    users = _users(request)

    def change() -> UserInfo:
        try:
            users.set_groups(name, body.groups)
        except UserNotFound:
            raise NotFound(f"no user {name}") from None
        except InvalidName as exc:
            raise InvalidRequest(str(exc)) from None
        return _get_user(users, name)

    return _user_out(await run_in_threadpool(change))


@router.put("/users/{name}/disabled", response_model=UserOut, summary="Disable or enable")
async def set_disabled(request: Request, name: str, body: DisabledIn, _admin: Admin) -> UserOut:
    users = _users(request)

    def change() -> UserInfo:
        try:
            users.set_disabled(name, body.disabled)
        except UserNotFound:
            raise NotFound(f"no user {name}") from None
        return _get_user(users, name)

    return _user_out(await run_in_threadpool(change))


@router.delete("/users/{name}", status_code=204, summary="Delete a user")
async def delete_user(request: Request, name: str, _admin: Admin) -> Response:
    users, now = _users(request), _now(request)
    refresh = RefreshTokenStore(request.app.state.db)

    def remove() -> None:
        try:
            users.delete(name)
        except UserNotFound:
            raise NotFound(f"no user {name}") from None
        refresh.revoke_subject(name, now)

    await run_in_threadpool(remove)
    return Response(status_code=204)


# -- CI tokens ------------------------------------------------------------


class CITokenCreate(_Body):
    name: str = Field(min_length=1, max_length=255)
    scopes: list[str] = Field(min_length=1, max_length=100)
    ttl: int = Field(gt=0, description="seconds until the token expires")
    description: str = Field(default="", max_length=1024)


class CITokenOut(BaseModel):
    name: str
    description: str
    scopes: list[str]
    created_at: dt.datetime
    created_by: str
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None
    last_used_ip: str | None
    state: str


class CITokenCreated(CITokenOut):
    secret: str = Field(description="shown once; use it as the password with the name")


def _ci_out(info: CITokenInfo, now: dt.datetime) -> dict[str, Any]:
    return {
        "name": info.name,
        "description": info.description,
        "scopes": [str(p) for p in info.scopes.patterns],
        "created_at": info.created_at,
        "created_by": info.created_by,
        "expires_at": info.expires_at,
        "revoked_at": info.revoked_at,
        "last_used_at": info.last_used_at,
        "last_used_ip": info.last_used_ip,
        "state": info.state(now),
    }


def create_ci_token(
    store: CITokenStore,
    body: CITokenCreate,
    *,
    max_ttl: int,
    now: dt.datetime,
    created_by: str,
) -> tuple[CITokenInfo, str]:
    """Shared by the API and the CLI; raises the API's typed errors."""
    if body.ttl > max_ttl:
        raise InvalidRequest(f"ttl exceeds the maximum of {max_ttl} s")
    try:
        scopes = ScopeLimit.parse(body.scopes)
    except ScopePatternError as exc:
        raise InvalidRequest(f"bad scope: {exc}") from None
    try:
        return store.create(
            body.name,
            scopes,
            now + dt.timedelta(seconds=body.ttl),
            now,
            description=body.description,
            created_by=created_by,
        )
    except InvalidName as exc:
        raise InvalidRequest(str(exc)) from None
    except CITokenExists:
        raise Conflict(f"a live CI token named {body.name} exists; revoke it first") from None


def _ci_store(request: Request) -> CITokenStore:
    return _grants(request).ci_tokens


@router.get("/ci-tokens", response_model=list[CITokenOut], summary="List CI tokens")
async def list_ci_tokens(request: Request, _admin: Admin) -> list[dict[str, Any]]:
    now = _now(request)
    tokens = await run_in_threadpool(_ci_store(request).list)
    return [_ci_out(t, now) for t in tokens]


@router.post(
    "/ci-tokens", response_model=CITokenCreated, status_code=201, summary="Create a CI token"
)
async def create_ci(request: Request, body: CITokenCreate, admin: Admin) -> dict[str, Any]:
    now = _now(request)
    max_ttl: int = request.app.state.config.ci_tokens.max_ttl
    info, secret = await run_in_threadpool(
        lambda: create_ci_token(
            _ci_store(request), body, max_ttl=max_ttl, now=now, created_by=admin.subject
        )
    )
    return {**_ci_out(info, now), "secret": secret}


@router.delete("/ci-tokens/{name}", status_code=204, summary="Revoke a CI token")
async def revoke_ci(request: Request, name: str, _admin: Admin) -> Response:
    revoked = await run_in_threadpool(_ci_store(request).revoke, name, _now(request))
    if not revoked:
        raise NotFound(f"no live CI token named {name}")
    return Response(status_code=204)


# -- refresh tokens -------------------------------------------------------


class RevokedOut(BaseModel):
    revoked: int


@router.get(
    "/refresh-tokens",
    response_model=list[RefreshTokenInfo],
    summary="Refresh tokens (never values)",
)
async def list_refresh_tokens(
    request: Request,
    _admin: Admin,
    user: Annotated[str | None, Query(max_length=255)] = None,
) -> list[RefreshTokenInfo]:
    return await run_in_threadpool(RefreshTokenStore(request.app.state.db).list, user)


@router.delete(
    "/refresh-tokens", response_model=RevokedOut, summary="Revoke all of a user's refresh tokens"
)
async def revoke_user_refresh_tokens(
    request: Request, _admin: Admin, user: Annotated[str, Query(min_length=1, max_length=255)]
) -> RevokedOut:
    store = RefreshTokenStore(request.app.state.db)
    count = await run_in_threadpool(store.revoke_subject, user, _now(request))
    return RevokedOut(revoked=count)


@router.delete("/refresh-tokens/{token_id}", status_code=204, summary="Revoke one refresh token")
async def revoke_refresh_token(
    request: Request, token_id: Annotated[int, Path(ge=1, le=2**62)], _admin: Admin
) -> Response:
    store = RefreshTokenStore(request.app.state.db)
    if not await run_in_threadpool(store.revoke, token_id, _now(request)):
        raise NotFound(f"no live refresh token {token_id}")
    return Response(status_code=204)


# -- audit ------------------------------------------------------------------


def _utc(name: str, value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise InvalidRequest(f"{name} needs a time zone (e.g. 2026-01-01T00:00:00Z)")
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise InvalidRequest(f"{name} is out of range") from None


@router.get("/audit", response_model=list[AuditRecord], summary="The audit trail, newest first")
async def audit(
    request: Request,
    _admin: Admin,
    subject: Annotated[str | None, Query(max_length=255)] = None,
    outcome: Annotated[Outcome | None, Query()] = None,
    since: Annotated[dt.datetime | None, Query()] = None,
    until: Annotated[dt.datetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditRecord]:
    since, until = _utc("since", since), _utc("until", until)
    await run_in_threadpool(request.app.state.audit.flush, 2.0)
    store = AuditStore(request.app.state.db)
    records = await run_in_threadpool(
        lambda: store.query(subject=subject, outcome=outcome, since=since, until=until, limit=limit)
    )
    return records


assert set(OUTCOMES) == set(Outcome.__args__)  # type: ignore[attr-defined]

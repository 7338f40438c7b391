"""/admin/v1/ci-tokens: robot credentials with their own scopes and an expiry."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from tokenserver.accounts import CITokenInfo
from tokenserver.routes.admin.auth import Admin, AdminRoute
from tokenserver.routes.admin.common import ERROR_RESPONSES, StrictBody, answers_nothing
from tokenserver.routes.common import services

__all__ = ["router"]

router = APIRouter(route_class=AdminRoute, responses=ERROR_RESPONSES)


class CITokenCreate(StrictBody):
    name: str = Field(min_length=1, max_length=255)
    scopes: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        min_length=1, max_length=100, description="scope patterns, e.g. repository:team/*:pull"
    )
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


def _out(info: CITokenInfo, now: dt.datetime) -> dict[str, Any]:
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


def _now(request: Request) -> dt.datetime:
    return services(request).clock()


@router.get(
    "/ci-tokens", response_model=list[CITokenOut], name="ci_token.list", summary="List CI tokens"
)
def list_ci_tokens(request: Request, _admin: Admin) -> list[dict[str, Any]]:
    now = _now(request)
    return [_out(t, now) for t in services(request).accounts.list_ci_tokens()]


@router.post(
    "/ci-tokens",
    response_model=CITokenCreated,
    status_code=201,
    name="ci_token.create",
    summary="Create a CI token",
)
def create_ci_token(request: Request, body: CITokenCreate, admin: Admin) -> dict[str, Any]:
    info, secret = services(request).accounts.create_ci_token(
        admin, body.name, body.scopes, body.ttl, body.description
    )
    return {**_out(info, _now(request)), "secret": secret}


@answers_nothing(router.delete, "/ci-tokens/{name}", "ci_token.revoke", "Revoke a CI token")
def revoke_ci_token(request: Request, name: str, admin: Admin) -> None:
    services(request).accounts.revoke_ci_token(admin, name)

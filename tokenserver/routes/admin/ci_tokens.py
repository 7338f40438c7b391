"""/admin/v1/ci-tokens: robot credentials with their own scopes and an expiry."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import Field

from tokenserver.routes.admin.auth import Admin, AdminRoute
from tokenserver.routes.admin.common import ERROR_RESPONSES, StrictBody, answers_nothing
from tokenserver.routes.common import services
from tokenserver.token_views import CITokenView

__all__ = ["router"]

router = APIRouter(route_class=AdminRoute, responses=ERROR_RESPONSES)


class CITokenCreate(StrictBody):
    name: str = Field(min_length=1, max_length=255)
    scopes: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        min_length=1, max_length=100, description="scope patterns, e.g. repository:team/*:pull"
    )
    ttl: int = Field(gt=0, description="seconds until the token expires")
    description: str = Field(default="", max_length=1024)


class CITokenCreated(CITokenView):
    secret: str = Field(description="shown once; use it as the password with the name")


def _now(request: Request) -> dt.datetime:
    return services(request).clock()


@router.get("/ci-tokens", name="ci_token.list", summary="List CI tokens")
def list_ci_tokens(request: Request, _admin: Admin) -> list[CITokenView]:
    now = _now(request)
    return [CITokenView.of(t, now) for t in services(request).accounts.list_ci_tokens()]


@router.post("/ci-tokens", status_code=201, name="ci_token.create", summary="Create a CI token")
def create_ci_token(request: Request, body: CITokenCreate, admin: Admin) -> CITokenCreated:
    info, secret = services(request).accounts.create_ci_token(
        admin, body.name, body.scopes, body.ttl, body.description
    )
    return CITokenCreated(**CITokenView.of(info, _now(request)).model_dump(), secret=secret)


@answers_nothing(router.delete, "/ci-tokens/{name}", "ci_token.revoke", "Revoke a CI token")
def revoke_ci_token(request: Request, name: str, admin: Admin) -> None:
    services(request).accounts.revoke_ci_token(admin, name)

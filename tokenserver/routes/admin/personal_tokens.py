"""/admin/v1/personal-tokens: people's own tokens, listed, made and revoked for them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import Field

from tokenserver.routes.admin.auth import Admin, AdminRoute
from tokenserver.routes.admin.common import (
    ERROR_RESPONSES,
    NameFilter,
    StrictBody,
    answers_nothing,
)
from tokenserver.routes.common import services
from tokenserver.token_views import PersonalTokenView

__all__ = ["router"]

router = APIRouter(route_class=AdminRoute, responses=ERROR_RESPONSES)


class PersonalTokenCreate(StrictBody):
    user: str = Field(min_length=1, max_length=255, description="the person it is for")
    name: str = Field(min_length=1, max_length=255)
    scopes: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        min_length=1, max_length=100, description="scope patterns, e.g. repository:alice/*:pull"
    )
    ttl: int = Field(gt=0, description="seconds until the token expires")


class PersonalTokenCreated(PersonalTokenView):
    secret: str = Field(description="shown once; use it as the password with the person's name")


@router.get("/personal-tokens", name="personal_token.list", summary="List personal tokens")
def list_personal_tokens(
    request: Request, _admin: Admin, user: NameFilter = None
) -> list[PersonalTokenView]:
    now = services(request).clock()
    tokens = services(request).accounts.list_personal_tokens(user)
    return [PersonalTokenView.of(t, now) for t in tokens]


@router.post(
    "/personal-tokens",
    status_code=201,
    name="personal_token.create",
    summary="Create a personal token for a person",
)
def create_personal_token(
    request: Request, body: PersonalTokenCreate, admin: Admin
) -> PersonalTokenCreated:
    info, secret = services(request).accounts.create_personal_token(
        admin, body.user, body.name, body.scopes, body.ttl
    )
    shown = PersonalTokenView.of(info, services(request).clock())
    return PersonalTokenCreated(**shown.model_dump(), secret=secret)


@answers_nothing(
    router.delete,
    "/personal-tokens/{user}/{name}",
    "personal_token.revoke",
    "Revoke a person's token",
)
def revoke_personal_token(request: Request, user: str, name: str, admin: Admin) -> None:
    services(request).accounts.revoke_personal_token(admin, user, name)

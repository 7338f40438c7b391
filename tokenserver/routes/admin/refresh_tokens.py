"""/admin/v1/refresh-tokens: the sessions `docker login` opened (never their values)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from tokenserver.accounts import RefreshTokenInfo
from tokenserver.routes.admin.auth import Admin, AdminRoute
from tokenserver.routes.admin.common import ERROR_RESPONSES, NameFilter, RowId, answers_nothing
from tokenserver.routes.common import services

__all__ = ["router"]

router = APIRouter(route_class=AdminRoute, responses=ERROR_RESPONSES)


class RevokedOut(BaseModel):
    revoked: int


@router.get("/refresh-tokens", name="refresh_token.list", summary="Refresh tokens (never values)")
def list_refresh_tokens(
    request: Request, _admin: Admin, user: NameFilter = None
) -> list[RefreshTokenInfo]:
    return services(request).accounts.list_refresh_tokens(user)


@router.delete(
    "/refresh-tokens",
    name="refresh_token.revoke",
    summary="Revoke all of a user's refresh tokens",
)
def revoke_user_refresh_tokens(
    request: Request, admin: Admin, user: Annotated[str, Query(min_length=1, max_length=255)]
) -> RevokedOut:
    return RevokedOut(revoked=services(request).accounts.revoke_refresh_tokens(admin, user))


@answers_nothing(
    router.delete, "/refresh-tokens/{token_id}", "refresh_token.revoke", "Revoke one refresh token"
)
def revoke_refresh_token(request: Request, token_id: RowId, admin: Admin) -> None:
    services(request).accounts.revoke_refresh_token(admin, token_id)

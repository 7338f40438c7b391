"""/admin/v1/refresh-tokens: the sessions `docker login` opened (never their values)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from tokenserver.accounts import RefreshTokenInfo
from tokenserver.routes.admin.auth import Admin, AdminRoute
from tokenserver.routes.admin.common import ERROR_RESPONSES, NameFilter, RowId, answers_nothing
from tokenserver.routes.common import services

__all__ = ["router"]

router = APIRouter(route_class=AdminRoute, responses=ERROR_RESPONSES)


class RevokedOut(BaseModel):
    revoked: int


@router.get(
    "/refresh-tokens",
    response_model=list[RefreshTokenInfo],
    name="refresh_token.list",
    summary="Refresh tokens (never values)",
)
async def list_refresh_tokens(
    request: Request,
    _admin: Admin,
    user: NameFilter = None,
) -> list[RefreshTokenInfo]:
    return await run_in_threadpool(services(request).accounts.list_refresh_tokens, user)


@router.delete(
    "/refresh-tokens",
    response_model=RevokedOut,
    name="refresh_token.revoke",
    summary="Revoke all of a user's refresh tokens",
)
async def revoke_user_refresh_tokens(
    request: Request, admin: Admin, user: Annotated[str, Query(min_length=1, max_length=255)]
) -> RevokedOut:
    count = await run_in_threadpool(services(request).accounts.revoke_refresh_tokens, admin, user)
    return RevokedOut(revoked=count)


@answers_nothing(
    router.delete,
    "/refresh-tokens/{token_id}",
    name="refresh_token.revoke",
    summary="Revoke one refresh token",
)
def revoke_refresh_token(request: Request, token_id: RowId, admin: Admin) -> None:
    services(request).accounts.revoke_refresh_token(admin, token_id)

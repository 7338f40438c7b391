"""/admin/v1/ui-sessions: who is signed in to the admin web page, and ending it."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from tokenserver.routes.admin.auth import Admin, AdminRoute
from tokenserver.routes.admin.common import ERROR_RESPONSES, RowId, answers_nothing
from tokenserver.routes.common import services

__all__ = ["router"]

router = APIRouter(route_class=AdminRoute, responses=ERROR_RESPONSES)

User = Annotated[str, Query(min_length=1, max_length=255, description="any spelling of the name")]


class UISessionOut(BaseModel):
    """A live session: never its cookie, the cookie's hash or its CSRF token."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    user: str = Field(validation_alias="subject")
    backend: str
    created_at: dt.datetime
    expires_at: dt.datetime


class EndedOut(BaseModel):
    ended: int


@router.get("/ui-sessions", name="ui_session.list", summary="Live sessions of the admin web page")
def list_ui_sessions(
    request: Request, _admin: Admin, user: User | None = None
) -> list[UISessionOut]:
    return [
        UISessionOut.model_validate(s) for s in services(request).accounts.list_ui_sessions(user)
    ]


@router.delete(
    "/ui-sessions",
    name="ui_session.end",
    summary="End every web session of a user, on every instance",
)
def end_user_ui_sessions(request: Request, admin: Admin, user: User) -> EndedOut:
    return EndedOut(ended=services(request).accounts.end_ui_sessions(admin, user))


@answers_nothing(
    router.delete,
    "/ui-sessions/{session_id}",
    "ui_session.end",
    "End one web session, on every instance",
)
def end_ui_session(request: Request, session_id: RowId, admin: Admin) -> None:
    services(request).accounts.end_ui_session(admin, session_id)

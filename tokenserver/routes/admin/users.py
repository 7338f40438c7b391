"""/admin/v1/users: the database's users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from tokenserver.accounts import UserInfo
from tokenserver.passwords import MAX_PASSWORD_BYTES
from tokenserver.routes.admin.auth import Admin, AdminRoute
from tokenserver.routes.admin.common import ERROR_RESPONSES, StrictBody, answers_nothing
from tokenserver.routes.common import services

__all__ = ["router"]

router = APIRouter(route_class=AdminRoute, responses=ERROR_RESPONSES)

Name = Annotated[str, Field(min_length=1, max_length=255)]
Password = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_PASSWORD_BYTES,
        description=f"at most {MAX_PASSWORD_BYTES} bytes in UTF-8 (what bcrypt reads)",
    ),
]
Groups = Annotated[list[Name], Field(max_length=100)]


class UserOut(BaseModel):
    name: str
    groups: list[str]
    disabled: bool


class UserCreate(StrictBody):
    name: Name
    password: Password
    groups: Groups = Field(default_factory=list)


class PasswordIn(StrictBody):
    password: Password


class GroupsIn(StrictBody):
    groups: Groups


class DisabledIn(StrictBody):
    disabled: bool


def _out(user: UserInfo) -> UserOut:
    return UserOut(name=user.name, groups=list(user.groups), disabled=user.disabled)


@router.get("/users", name="user.list", summary="List users")
def list_users(request: Request, _admin: Admin) -> list[UserOut]:
    return [_out(u) for u in services(request).accounts.list_users()]


@router.post("/users", status_code=201, name="user.create", summary="Create a user")
def create_user(request: Request, body: UserCreate, admin: Admin) -> UserOut:
    accounts = services(request).accounts
    return _out(accounts.create_user(admin, body.name, body.password, body.groups))


@router.get("/users/{name}", name="user.get", summary="One user")
def get_user(request: Request, name: str, _admin: Admin) -> UserOut:
    return _out(services(request).accounts.get_user(name))


@answers_nothing(
    router.put,
    "/users/{name}/password",
    "user.password",
    "Set a password (revokes the user's refresh tokens)",
)
def set_password(request: Request, name: str, body: PasswordIn, admin: Admin) -> None:
    services(request).accounts.set_password(admin, name, body.password)


@router.put("/users/{name}/groups", name="user.groups", summary="Replace a user's groups")
def set_groups(request: Request, name: str, body: GroupsIn, admin: Admin) -> UserOut:
    return _out(services(request).accounts.set_groups(admin, name, body.groups))


# Refused before the body is read, an enable is recorded as this act too.
@router.put("/users/{name}/disabled", name="user.disable", summary="Disable or enable")
def set_disabled(request: Request, name: str, body: DisabledIn, admin: Admin) -> UserOut:
    return _out(services(request).accounts.set_disabled(admin, name, body.disabled))


@answers_nothing(
    router.delete, "/users/{name}", "user.delete", "Delete a user (and revoke their refresh tokens)"
)
def delete_user(request: Request, name: str, admin: Admin) -> None:
    services(request).accounts.delete_user(admin, name)

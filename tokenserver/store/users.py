"""The server's own users and their groups."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from tokenserver.store.db import Database
from tokenserver.store.models import User, UserGroup

__all__ = ["UserExists", "UserInfo", "UserNotFound", "UserStore"]


class UserExists(Exception):
    pass


class UserNotFound(Exception):
    pass


@dataclass(frozen=True)
class UserInfo:
    name: str
    password_hash: str
    disabled: bool
    groups: tuple[str, ...]
    created_at: dt.datetime


def _info(user: User) -> UserInfo:
    return UserInfo(
        user.name,
        user.password_hash,
        user.disabled,
        tuple(g.name for g in user.groups),
        user.created_at,
    )


class UserStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, name: str) -> UserInfo | None:
        with self._db.session() as s:
            user = s.scalar(select(User).where(User.name == name))
            return None if user is None else _info(user)

    def list(self) -> list[UserInfo]:
        with self._db.session() as s:
            return [_info(u) for u in s.scalars(select(User).order_by(User.name))]

    def add(self, name: str, password_hash: str, groups: Iterable[str] = ()) -> UserInfo:
        now = dt.datetime.now(dt.UTC)
        user = User(
            name=name,
            password_hash=password_hash,
            disabled=False,
            created_at=now,
            updated_at=now,
            groups=[UserGroup(name=g) for g in sorted(set(groups))],
        )
        try:
            with self._db.session() as s:
                s.add(user)
                s.flush()
                return _info(user)
        except IntegrityError:
            raise UserExists(name) from None

    def _update(self, name: str, **changes: object) -> None:
        with self._db.session() as s:
            user = s.scalar(select(User).where(User.name == name))
            if user is None:
                raise UserNotFound(name)
            for key, value in changes.items():
                setattr(user, key, value)
            user.updated_at = dt.datetime.now(dt.UTC)

    def set_password(self, name: str, password_hash: str) -> None:
        self._update(name, password_hash=password_hash)

    def set_disabled(self, name: str, disabled: bool) -> None:
        self._update(name, disabled=disabled)

    def set_groups(self, name: str, groups: Iterable[str]) -> None:
        with self._db.session() as s:
            user = s.scalar(select(User).where(User.name == name))
            if user is None:
                raise UserNotFound(name)
            user.groups = [UserGroup(name=g) for g in sorted(set(groups))]
            user.updated_at = dt.datetime.now(dt.UTC)

    def delete(self, name: str) -> None:
        with self._db.session() as s:
            if s.execute(delete(User).where(User.name == name)).rowcount == 0:  # type: ignore[attr-defined]
                raise UserNotFound(name)

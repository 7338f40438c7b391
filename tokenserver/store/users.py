"""The server's own users and their groups."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from tokenserver.store.db import Database
from tokenserver.store.models import User, UserGroup

__all__ = ["InvalidName", "UserExists", "UserInfo", "UserNotFound", "UserStore", "check_name"]

MAX_NAME = 255


class InvalidName(ValueError):
    pass


def check_name(name: str, what: str = "user name") -> str:
    """User and group names: no ':' (it splits Basic credentials), '/', spaces or controls."""
    if not name or len(name) > MAX_NAME:
        raise InvalidName(f"a {what} has 1 to {MAX_NAME} characters")
    if any(c in ":/" or c.isspace() or not c.isprintable() for c in name):
        raise InvalidName(f"a {what} may not contain ':', '/', spaces or control characters")
    return name


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
        # Runs on every authenticated request: one round trip, no ORM identity map.
        query = (
            select(
                User.name,
                User.password_hash,
                User.disabled,
                User.created_at,
                UserGroup.name.label("group"),
            )
            .outerjoin(UserGroup, UserGroup.user_id == User.id)
            .where(User.name == name)
            .order_by(UserGroup.name)
        )
        with self._db.engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return None
        first = rows[0]
        groups = tuple(r.group for r in rows if r.group is not None)
        return UserInfo(first.name, first.password_hash, first.disabled, groups, first.created_at)

    def list(self) -> list[UserInfo]:
        with self._db.session() as s:
            return [_info(u) for u in s.scalars(select(User).order_by(User.name))]

    def add(self, name: str, password_hash: str, groups: Iterable[str] = ()) -> UserInfo:
        check_name(name)
        groups = [check_name(g, "group name") for g in groups]
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
            user.groups = [UserGroup(name=check_name(g, "group name")) for g in sorted(set(groups))]
            user.updated_at = dt.datetime.now(dt.UTC)

    def delete(self, name: str) -> None:
        with self._db.session() as s:
            if s.execute(delete(User).where(User.name == name)).rowcount == 0:  # type: ignore[attr-defined]
                raise UserNotFound(name)

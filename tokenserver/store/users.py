"""The server's own users and their groups.

Every change is one statement or locks the user's row first, so concurrent
changes and deletes of one user (from several instances, too) end as
"done" or "no such user", never as a half-applied update.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from tokenserver.names import InvalidName, check_name, name_key
from tokenserver.store.db import Database
from tokenserver.store.models import User, UserGroup

__all__ = [
    "Credentials",
    "InvalidName",
    "SSOPerson",
    "UserExists",
    "UserInfo",
    "UserNotFound",
    "UserStore",
    "account_key",
]


def account_key(account_id: str, password_hash: str) -> str:
    """What a session or refresh token of this user is bound to (Identity.account_key).

    A new account (another `account_id`) or a new password (another bcrypt
    hash: the salt is new every time) makes another key.
    """
    return hashlib.sha256(f"{account_id}:{password_hash}".encode()).hexdigest()


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
    # This account and no later one of the same name (see User.account_id).
    account_id: str
    # "local", or "sso" for a person of the OpenID provider (see User.source).
    source: str = "local"


def _info(user: User) -> UserInfo:
    return UserInfo(
        user.name,
        user.password_hash,
        user.disabled,
        tuple(g.name for g in user.groups),
        user.created_at,
        user.account_id,
        user.source,
    )


@dataclass(frozen=True)
class Credentials:
    """What a login reads of a user."""

    name: str
    password_hash: str
    disabled: bool
    groups: frozenset[str]
    account_id: str


class SSOPerson(NamedTuple):
    """A person as the OpenID provider names them: its issuer and their subject; `key`
    is what their account is bound to (User.sso_key)."""

    issuer: str
    subject: str

    def key(self) -> str:
        # A NUL cannot be in a URL, so no issuer and subject run into another pair.
        return hashlib.sha256(f"{self.issuer}\0{self.subject}".encode()).hexdigest()


# What a login needs of a user, compiled once (see PreparedRead).
_CREDENTIALS = (
    select(User.name, User.password_hash, User.disabled, User.account_id, UserGroup.name)
    .outerjoin(UserGroup, UserGroup.user_id == User.id)
    .where(User.name == bindparam("name"))
    .order_by(UserGroup.name)
)


def _group_names(groups: Iterable[str]) -> list[str]:
    return sorted({check_name(g, "group name") for g in groups})


class UserStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._credentials = db.prepared(_CREDENTIALS)
        self._listeners: list[Callable[[str], None]] = []

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call `listener(name)` after each change this store makes to a user."""
        self._listeners.append(listener)

    def _changed(self, name: str) -> None:
        for listener in self._listeners:
            listener(name)

    def credentials(self, name: str) -> Credentials | None:
        """What a login reads, in one round trip."""
        rows = self._credentials.all({"name": name})
        if not rows:
            return None
        first = rows[0]
        groups = frozenset(str(r[4]) for r in rows if r[4] is not None)
        return Credentials(str(first[0]), str(first[1]), bool(first[2]), groups, str(first[3]))

    def get(self, name: str) -> UserInfo | None:
        # One round trip, no ORM identity map.
        query = (
            select(
                User.name,
                User.password_hash,
                User.disabled,
                User.created_at,
                User.account_id,
                User.source,
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
        return UserInfo(
            first.name,
            first.password_hash,
            first.disabled,
            groups,
            first.created_at,
            first.account_id,
            first.source,
        )

    def exists_like(self, name: str) -> bool:
        """Whether a user goes by any spelling of `name`."""
        with self._db.engine.connect() as conn:
            found = conn.execute(select(User.id).where(User.name_key == name_key(name))).first()
        return found is not None

    def list(self) -> list[UserInfo]:
        with self._db.session() as s:
            return [_info(u) for u in s.scalars(select(User).order_by(User.name))]

    def add(
        self,
        name: str,
        password_hash: str,
        groups: Iterable[str] = (),
        *,
        sso: SSOPerson | None = None,
    ) -> UserInfo:
        """Raises UserExists when any spelling of the name is taken (the database decides),
        or, for a person of the provider, when they have an account already."""
        check_name(name)
        now = dt.datetime.now(dt.UTC)
        user = User(
            name=name,
            name_key=name_key(name),
            account_id=secrets.token_hex(16),
            password_hash=password_hash,
            disabled=False,
            created_at=now,
            updated_at=now,
            source="local" if sso is None else "sso",
            sso_key=None if sso is None else sso.key(),
            sso_subject=None if sso is None else sso.subject[:255],
            sso_checked_at=None if sso is None else now,
            groups=[UserGroup(name=g) for g in _group_names(groups)],
        )
        try:
            with self._db.session() as s:
                s.add(user)
                s.flush()
                info = _info(user)
        except IntegrityError:
            raise UserExists(name) from None
        self._changed(name)
        return info

    def sso_account(self, person: SSOPerson) -> str | None:
        """The name of the account of this person of the provider, if they have one."""
        with self._db.engine.connect() as conn:
            found = conn.execute(select(User.name).where(User.sso_key == person.key())).first()
        return None if found is None else str(found.name)

    def vouched(self, name: str, at: dt.datetime) -> None:
        """The provider vouched for this person (they signed in through it) at `at`."""
        self._update(name, sso_checked_at=at)

    def _update(self, name: str, **changes: object) -> None:
        with self._db.session() as s:
            result = s.execute(
                update(User)
                .where(User.name == name)
                .values(**changes, updated_at=dt.datetime.now(dt.UTC))
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise UserNotFound(name)
        self._changed(name)

    def set_password(self, name: str, password_hash: str) -> None:
        self._update(name, password_hash=password_hash)

    def set_disabled(self, name: str, disabled: bool) -> None:
        self._update(name, disabled=disabled)

    def set_groups(self, name: str, groups: Iterable[str]) -> None:
        names = _group_names(groups)
        try:
            with self._db.session() as s:
                # The row lock (PostgreSQL; SQLite serialises writers anyway) makes
                # concurrent replacements of one user's groups take turns.
                user_id = s.scalar(select(User.id).where(User.name == name).with_for_update())
                if user_id is None:
                    raise UserNotFound(name)
                s.execute(delete(UserGroup).where(UserGroup.user_id == user_id))
                if names:
                    s.execute(insert(UserGroup), [{"user_id": user_id, "name": g} for g in names])
                s.execute(
                    update(User)
                    .where(User.id == user_id)
                    .values(updated_at=dt.datetime.now(dt.UTC))
                )
        except IntegrityError:
            # The user was deleted between the lookup and the insert.
            raise UserNotFound(name) from None
        self._changed(name)

    def delete(self, name: str) -> None:
        with self._db.session() as s:
            if s.execute(delete(User).where(User.name == name)).rowcount == 0:  # type: ignore[attr-defined]
                raise UserNotFound(name)
        self._changed(name)

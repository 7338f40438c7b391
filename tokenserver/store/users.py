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
    "SSOClaim",
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
    # For a person of the OpenID provider ("sso"): when it last vouched for them.
    source: str = "local"
    sso_checked_at: dt.datetime | None = None


class SSOPerson(NamedTuple):
    """A person as the OpenID provider names them: its issuer and their subject; `key`
    is what their account is bound to (User.sso_key)."""

    issuer: str
    subject: str

    def key(self) -> str:
        # A NUL cannot be in a URL, so no issuer and subject run into another pair.
        return hashlib.sha256(f"{self.issuer}\0{self.subject}".encode()).hexdigest()


@dataclass(frozen=True)
class SSOClaim:
    """A person of the provider one instance now asks the provider about (see `claim_sso`)."""

    name: str
    subject: str
    # Their sealed refresh token at the provider.
    refresh: str


# What a login needs of a user, compiled once (see PreparedRead).
_CREDENTIALS = (
    select(
        User.name,
        User.password_hash,
        User.disabled,
        User.account_id,
        User.source,
        User.sso_checked_at,
        UserGroup.name,
    )
    .outerjoin(UserGroup, UserGroup.user_id == User.id)
    .where(User.name == bindparam("name"))
    .order_by(UserGroup.name)
)


def _utc(value: object) -> dt.datetime | None:
    """A stored time as an aware UTC datetime (a raw select skips the column type)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


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
        groups = frozenset(str(r[6]) for r in rows if r[6] is not None)
        return Credentials(
            str(first[0]),
            str(first[1]),
            bool(first[2]),
            groups,
            str(first[3]),
            str(first[4]),
            _utc(first[5]),
        )

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
        sso_refresh: str | None = None,
        now: dt.datetime | None = None,
    ) -> UserInfo:
        """Raises UserExists when any spelling of the name is taken (the database decides),
        or, for a person of the provider, when they have an account already. `now` is
        when (the accounts service's clock; the system's if not given)."""
        check_name(name)
        now = now or dt.datetime.now(dt.UTC)
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
            sso_refresh=None if sso is None else sso_refresh,
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

    def vouched(self, name: str, at: dt.datetime, refresh: str | None = None) -> None:
        """The provider vouched for this person at `at` (a sign-in or a recheck); `refresh`,
        if it gave one, replaces their sealed refresh token. Ends a lease on them."""
        kept = {} if refresh is None else {"sso_refresh": refresh}
        self._update(name, sso_checked_at=at, sso_recheck_until=None, **kept)

    def sso_due(self, before: dt.datetime, now: dt.datetime, limit: int) -> tuple[str, ...]:
        """People of the provider last vouched for before `before` whom it can be asked
        about (a refresh token kept) and nobody is asking about now: the oldest first."""
        query = (
            select(User.name)
            .where(User.source == "sso", User.sso_refresh.is_not(None))
            .where(User.sso_checked_at < before)
            .where((User.sso_recheck_until.is_(None)) | (User.sso_recheck_until < now))
            .order_by(User.sso_checked_at)
            .limit(limit)
        )
        with self._db.engine.connect() as conn:
            return tuple(str(name) for name in conn.execute(query).scalars())

    def claim_sso(
        self, name: str, before: dt.datetime, now: dt.datetime, until: dt.datetime
    ) -> SSOClaim | None:
        """Take the lease on asking the provider about `name` until `until`, if they are
        still due (see `sso_due`) and no one holds it: one statement, so of instances
        racing for a person one wins."""
        with self._db.session() as s:
            taken = s.execute(
                update(User)
                .where(User.name == name, User.source == "sso", User.sso_refresh.is_not(None))
                .where(User.sso_checked_at < before)
                .where((User.sso_recheck_until.is_(None)) | (User.sso_recheck_until < now))
                .values(sso_recheck_until=until)
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                return None
            row = s.execute(
                select(User.sso_subject, User.sso_refresh).where(User.name == name)
            ).one()
        return SSOClaim(name, str(row.sso_subject), str(row.sso_refresh))

    def release_sso(self, name: str) -> None:
        """End a lease on `name` without news of them."""
        with self._db.session() as s:
            s.execute(update(User).where(User.name == name).values(sso_recheck_until=None))

    def unvouched(self, name: str) -> None:
        """The provider no longer vouches for person `name`: nothing it said of them
        counts any more, until they sign in through it again."""
        self._update(name, sso_checked_at=None, sso_refresh=None, sso_recheck_until=None)

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

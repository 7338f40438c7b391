"""Personal access tokens: a person's own credentials, kept only as SHA-256 hashes.

The secret (256 random bits) starts with `PREFIX` so secret scanners can find
a leaked one. A login presents the person's name as the username and the
secret as the password; the row is found by the secret's hash, and names the
account it was made for (the owner's backend and account key), which the
login checks is still the one its owner's name finds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.exc import IntegrityError

from authcore.identity import ScopeLimit
from tokenserver.names import check_name, name_key
from tokenserver.store.models import PersonalToken
from tokenserver.store.scoped_tokens import ScopedTokenInfo, ScopedTokenStore
from tokenserver.store.secret_hash import hash_secret
from tokenserver.store.table import record

__all__ = [
    "PREFIX",
    "Owner",
    "PersonalTokenExists",
    "PersonalTokenInfo",
    "PersonalTokenStore",
    "UsedPersonalToken",
]

# A secret is this and 43 characters (see `scoped_tokens.looks_like_secret`).
PREFIX = "tspat_"


class PersonalTokenExists(Exception):
    """The owner has a live token of this name; revoke it first."""


@dataclass(frozen=True)
class Owner:
    """The account a token is made for: the person's name, backend and account key."""

    name: str
    backend: str
    account_key: str = ""


@dataclass(frozen=True)
class PersonalTokenInfo(ScopedTokenInfo):
    # The person's own name and their backend.
    owner: str
    backend: str


@dataclass(frozen=True)
class UsedPersonalToken:
    """What a login needs of a live token; never leaves the authn layer."""

    id: int
    name: str
    owner: Owner
    scopes: ScopeLimit


def _scopes(text: str) -> ScopeLimit:
    return ScopeLimit.parse(text.split())


def _info(row: PersonalToken) -> PersonalTokenInfo:
    return record(PersonalTokenInfo, row, scopes=_scopes(row.scopes))


class PersonalTokenStore(ScopedTokenStore):
    model = PersonalToken
    prefix = PREFIX

    def create(
        self,
        owner: Owner,
        name: str,
        scopes: ScopeLimit,
        expires_at: dt.datetime,
        now: dt.datetime,
        *,
        created_by: str = "",
    ) -> tuple[PersonalTokenInfo, str]:
        """Store a new token; its record and the secret (shown once, never stored).

        Raises PersonalTokenExists while the owner has a live token of any
        spelling of the name.
        """
        check_name(name, "token name")
        owner_key, key = name_key(owner.name), name_key(name)
        mine = PersonalToken.owner_key == owner_key
        free_expired = (
            update(PersonalToken)
            .where(mine, PersonalToken.live_key == key, PersonalToken.expires_at <= now)
            .values(live_key=None)
        )
        try:
            return self._issue(
                free_expired, _info, scopes, expires_at, now, created_by,
                owner=owner.name, owner_key=owner_key, backend=owner.backend,
                account_key=owner.account_key or None, name=name, live_key=key,
            )  # fmt: skip
        except IntegrityError:
            raise PersonalTokenExists(name) from None

    def count_live(self, owner: str, now: dt.datetime) -> int:
        """How many live tokens `owner` (any spelling) has."""
        query = select(func.count()).where(
            PersonalToken.owner_key == name_key(owner),
            PersonalToken.revoked_at.is_(None),
            PersonalToken.expires_at > now,
        )
        with self._db.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def find_live(self, secret: str, now: dt.datetime) -> UsedPersonalToken | None:
        """The live token whose secret this is, with the account it was made for."""
        query = select(
            PersonalToken.id,
            PersonalToken.name,
            PersonalToken.owner,
            PersonalToken.backend,
            PersonalToken.account_key,
            PersonalToken.scopes,
        ).where(
            PersonalToken.secret_hash == hash_secret(secret),
            PersonalToken.revoked_at.is_(None),
            PersonalToken.expires_at > now,
        )
        with self._db.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        owner = Owner(row.owner, row.backend, row.account_key or "")
        return UsedPersonalToken(row.id, row.name, owner, _scopes(row.scopes))

    def list(self, owner: str | None = None) -> list[PersonalTokenInfo]:
        """Every token, oldest first; of `owner` (any spelling of the name) if given."""
        query = select(PersonalToken).order_by(PersonalToken.id)
        if owner is not None:
            query = query.where(PersonalToken.owner_key == name_key(owner))
        with self._db.session() as s:
            return [_info(r) for r in s.scalars(query)]

    def revoke(self, owner: str, name: str, now: dt.datetime) -> int:
        """Revoke `owner`'s live token named `name` (exactly); the count revoked."""
        return self._revoke(
            (PersonalToken.owner_key == name_key(owner)) & (PersonalToken.name == name), now
        )

    def revoke_owner(self, owner: str, now: dt.datetime, backend: str) -> int:
        """Revoke every live token of `owner` (any spelling) of `backend`; the count revoked."""
        return self._revoke(
            (PersonalToken.owner_key == name_key(owner)) & (PersonalToken.backend == backend), now
        )

    def _revoke(self, which: ColumnElement[bool], now: dt.datetime) -> int:
        return self._db.change(
            update(PersonalToken)
            .where(which, PersonalToken.revoked_at.is_(None))
            .values(revoked_at=now, live_key=None)
        )

"""CI tokens: created with scopes and an expiry, kept only as SHA-256 hashes of the secret.

The secret (256 random bits) starts with `PREFIX` so secret scanners can find
a leaked one. A login presents the token's name as the username and the
secret as the password; the row is found by the secret's hash, so the name
only has to agree with it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from authcore.identity import ScopeLimit
from tokenserver.names import check_name, name_key
from tokenserver.store.models import CIToken
from tokenserver.store.scoped_tokens import ScopedTokenInfo, ScopedTokenStore, looks_like_secret
from tokenserver.store.secret_hash import hash_secret
from tokenserver.store.table import record

__all__ = [
    "PREFIX",
    "CITokenExists",
    "CITokenInfo",
    "CITokenStore",
    "LiveToken",
    "hash_secret",
    "looks_like_ci_secret",
]

PREFIX = "tsci_"


def looks_like_ci_secret(value: str) -> bool:
    return looks_like_secret(PREFIX, value)


@dataclass(frozen=True)
class LiveToken:
    """What a login needs of a live token; never leaves the authn layer."""

    id: int
    name: str
    secret_hash: str
    scopes: ScopeLimit


class CITokenExists(Exception):
    """A live token already has this name; revoke it first."""


@dataclass(frozen=True)
class CITokenInfo(ScopedTokenInfo):
    description: str


def _info(row: CIToken) -> CITokenInfo:
    return record(CITokenInfo, row, scopes=ScopeLimit.parse(row.scopes.split()))


class CITokenStore(ScopedTokenStore):
    model = CIToken
    prefix = PREFIX

    def create(
        self,
        name: str,
        scopes: ScopeLimit,
        expires_at: dt.datetime,
        now: dt.datetime,
        *,
        description: str = "",
        created_by: str = "",
    ) -> tuple[CITokenInfo, str]:
        """Store a new token; returns its record and the secret (shown once, never stored).

        Raises CITokenExists while a live token has any spelling of the name.
        """
        check_name(name, "CI token name")
        key = name_key(name)
        free_expired = (
            update(CIToken)
            .where(CIToken.live_key == key, CIToken.expires_at <= now)
            .values(live_key=None)
        )
        try:
            return self._issue(
                free_expired, _info, scopes, expires_at, now, created_by,
                name=name, live_key=key, description=description,
            )  # fmt: skip
        except IntegrityError:
            raise CITokenExists(name) from None

    def live_like(self, name: str, now: dt.datetime) -> bool:
        """Whether a live token goes by any spelling of `name`."""
        with self._db.engine.connect() as conn:
            found = conn.execute(
                select(CIToken.id).where(
                    CIToken.live_key == name_key(name), CIToken.expires_at > now
                )
            ).first()
        return found is not None

    def find_live(self, name: str, now: dt.datetime) -> LiveToken | None:
        """The live token of this exact name, with what a login checks against."""
        with self._db.engine.connect() as conn:
            row = conn.execute(
                select(CIToken.id, CIToken.name, CIToken.secret_hash, CIToken.scopes).where(
                    CIToken.name == name, CIToken.revoked_at.is_(None), CIToken.expires_at > now
                )
            ).first()
        if row is None:
            return None
        return LiveToken(row.id, row.name, row.secret_hash, ScopeLimit.parse(row.scopes.split()))

    def list(self) -> list[CITokenInfo]:
        with self._db.session() as s:
            return [_info(r) for r in s.scalars(select(CIToken).order_by(CIToken.id))]

    def revoke(self, name: str, now: dt.datetime) -> int:
        """Revoke every live token of this name; the count revoked."""
        return self._db.change(
            update(CIToken)
            .where(CIToken.name == name, CIToken.revoked_at.is_(None))
            .values(revoked_at=now, live_key=None)
        )

"""CI tokens: created with scopes and an expiry, kept only as SHA-256 hashes of the secret.

The secret (256 random bits) starts with `PREFIX` so secret scanners can find
a leaked one. A login presents the token's name as the username and the
secret as the password; the row is found by the secret's hash, so the name
only has to agree with it.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from authcore.identity import ScopeLimit
from tokenserver.names import check_name, name_key
from tokenserver.store.models import CIToken
from tokenserver.store.secret_hash import hash_secret
from tokenserver.store.table import TableStore, record

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
_SECRET_LENGTH = len(PREFIX) + 43  # token_urlsafe(32)


def looks_like_ci_secret(value: str) -> bool:
    return value.startswith(PREFIX) and len(value) == _SECRET_LENGTH


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
class CITokenInfo:
    id: int
    name: str
    description: str
    scopes: ScopeLimit
    created_at: dt.datetime
    created_by: str
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None
    last_used_ip: str | None

    def state(self, now: dt.datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= now else "live"


def _info(row: CIToken) -> CITokenInfo:
    return record(CITokenInfo, row, scopes=ScopeLimit.parse(row.scopes.split()))


class CITokenStore(TableStore):
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
        secret = PREFIX + secrets.token_urlsafe(32)
        row = CIToken(
            name=name,
            live_key=key,
            description=description,
            scopes=str(scopes),
            secret_hash=hash_secret(secret),
            created_at=now,
            created_by=created_by,
            expires_at=expires_at,
        )
        try:
            with self._db.session() as s:
                # An expired token no longer holds its name.
                s.execute(
                    update(CIToken)
                    .where(CIToken.live_key == key, CIToken.expires_at <= now)
                    .values(live_key=None)
                )
                s.add(row)
                s.flush()
                return _info(row), secret
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

    def record_use(self, token_id: int, now: dt.datetime, ip: str | None) -> None:
        with self._db.session() as s:
            s.execute(
                update(CIToken)
                .where(CIToken.id == token_id)
                .values(last_used_at=now, last_used_ip=(ip or "")[:64] or None)
            )

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

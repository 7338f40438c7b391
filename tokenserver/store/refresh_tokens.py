"""Refresh tokens, stored only as SHA-256 hashes of the opaque value."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update

from tokenserver.store.db import Database
from tokenserver.store.models import RefreshToken

__all__ = ["RefreshTokenInfo", "RefreshTokenStore", "UsedRefreshToken", "hash_token"]

# The prefix lets secret scanners recognise a leaked token.
PREFIX = "rt_"


def hash_token(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class RefreshTokenInfo:
    id: int
    subject: str
    service: str
    client_id: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    expires_at: dt.datetime
    revoked_at: dt.datetime | None


@dataclass(frozen=True)
class UsedRefreshToken(RefreshTokenInfo):
    """A live token as a login reads it: with the account it was issued to.

    `backend` is None for a token issued before accounts were recorded.
    """

    backend: str | None = None
    account_key: str = ""


def _info(row: RefreshToken) -> RefreshTokenInfo:
    return RefreshTokenInfo(
        row.id,
        row.subject,
        row.service,
        row.client_id,
        row.created_at,
        row.last_used_at,
        row.expires_at,
        row.revoked_at,
    )


class RefreshTokenStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def issue(
        self,
        subject: str,
        service: str,
        client_id: str,
        lifetime: dt.timedelta,
        now: dt.datetime,
        *,
        backend: str,
        account_key: str = "",
    ) -> str:
        value = PREFIX + secrets.token_urlsafe(32)
        with self._db.session() as s:
            s.add(
                RefreshToken(
                    token_hash=hash_token(value),
                    subject=subject,
                    backend=backend,
                    account_key=account_key or None,
                    service=service,
                    client_id=client_id[:255],
                    created_at=now,
                    expires_at=now + lifetime,
                )
            )
        return value

    def use(self, value: str, now: dt.datetime) -> UsedRefreshToken | None:
        """The live token for this value (recording its use), or None."""
        with self._db.session() as s:
            row = s.scalar(select(RefreshToken).where(RefreshToken.token_hash == hash_token(value)))
            if row is None or row.revoked_at is not None or row.expires_at <= now:
                return None
            row.last_used_at = now
            return UsedRefreshToken(
                **vars(_info(row)), backend=row.backend, account_key=row.account_key or ""
            )

    def list(self, subject: str | None = None) -> list[RefreshTokenInfo]:
        query = select(RefreshToken).order_by(RefreshToken.id)
        if subject is not None:
            query = query.where(RefreshToken.subject == subject)
        with self._db.session() as s:
            return [_info(r) for r in s.scalars(query)]

    def revoke_subject(self, subject: str, now: dt.datetime) -> int:
        with self._db.session() as s:
            result = s.execute(
                update(RefreshToken)
                .where(RefreshToken.subject == subject, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    def revoke(self, token_id: int, now: dt.datetime) -> bool:
        with self._db.session() as s:
            result = s.execute(
                update(RefreshToken)
                .where(RefreshToken.id == token_id, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

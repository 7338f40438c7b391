"""Refresh tokens, stored only as SHA-256 hashes of the opaque value."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from sqlalchemy import ColumnElement, select, update

from tokenserver.store.models import RefreshToken
from tokenserver.store.secret_hash import hash_secret
from tokenserver.store.table import TableStore, record

__all__ = ["RefreshTokenInfo", "RefreshTokenStore", "UsedRefreshToken"]

# The prefix lets secret scanners recognise a leaked token.
PREFIX = "rt_"


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


class RefreshTokenStore(TableStore):
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
                    token_hash=hash_secret(value),
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
            row = s.scalar(
                select(RefreshToken).where(RefreshToken.token_hash == hash_secret(value))
            )
            if row is None or row.revoked_at is not None or row.expires_at <= now:
                return None
            row.last_used_at = now
            return record(UsedRefreshToken, row, account_key=row.account_key or "")

    def list(self, subject: str | None = None) -> list[RefreshTokenInfo]:
        query = select(RefreshToken).order_by(RefreshToken.id)
        if subject is not None:
            query = query.where(RefreshToken.subject == subject)
        with self._db.session() as s:
            return [record(RefreshTokenInfo, r) for r in s.scalars(query)]

    def revoke_subject(self, subject: str, now: dt.datetime) -> int:
        return self._revoke(RefreshToken.subject == subject, now)

    def revoke(self, token_id: int, now: dt.datetime) -> bool:
        return bool(self._revoke(RefreshToken.id == token_id, now))

    def _revoke(self, which: ColumnElement[bool], now: dt.datetime) -> int:
        """Revoke the live tokens `which` picks; how many."""
        return self._db.change(
            update(RefreshToken)
            .where(which, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )

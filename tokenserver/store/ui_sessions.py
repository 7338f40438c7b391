"""Sessions of the admin web page, kept in the database so any instance knows them.

The cookie carries 256 random bits; the table only their SHA-256, beside the
session's CSRF token. Signing out deletes the row, on whichever instance.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select

from tokenserver.store.db import Database
from tokenserver.store.models import UISession

__all__ = ["Session", "UISessionStore"]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Session:
    subject: str
    backend: str
    csrf: str
    expires_at: dt.datetime


class UISessionStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(
        self, subject: str, backend: str, now: dt.datetime, lifetime: dt.timedelta
    ) -> tuple[str, Session]:
        """A new session; returns the cookie value (shown to nobody else) and the session."""
        token = secrets.token_urlsafe(32)
        session = Session(subject, backend, secrets.token_urlsafe(32), now + lifetime)
        with self._db.session() as s:
            # Expired sessions go whenever a new one comes: the table stays small.
            s.execute(delete(UISession).where(UISession.expires_at <= now))
            s.add(
                UISession(
                    token_hash=_hash(token),
                    subject=subject,
                    backend=backend,
                    csrf=session.csrf,
                    created_at=now,
                    expires_at=session.expires_at,
                )
            )
        return token, session

    def get(self, token: str, now: dt.datetime) -> Session | None:
        with self._db.engine.connect() as conn:
            row = conn.execute(
                select(
                    UISession.subject, UISession.backend, UISession.csrf, UISession.expires_at
                ).where(UISession.token_hash == _hash(token), UISession.expires_at > now)
            ).first()
        return None if row is None else Session(row.subject, row.backend, row.csrf, row.expires_at)

    def end(self, token: str) -> None:
        with self._db.session() as s:
            s.execute(delete(UISession).where(UISession.token_hash == _hash(token)))

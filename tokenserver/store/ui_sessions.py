"""Sessions of the web page, kept in the database so any instance knows them.

The cookie carries 256 random bits; the table only their SHA-256, beside the
session's CSRF token. Ending a session deletes its row, on whichever
instance: every instance reads the row on every request, so the next one
anywhere finds nothing, and nothing can bring a deleted row back.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select

from tokenserver.names import name_key
from tokenserver.store.models import UISession
from tokenserver.store.secret_hash import hash_secret
from tokenserver.store.table import TableStore

__all__ = ["Session", "SessionInfo", "UISessionStore"]


@dataclass(frozen=True)
class SessionInfo:
    """What an admin may see of a session: never its cookie, its hash or its CSRF token."""

    id: int
    subject: str
    backend: str
    created_at: dt.datetime
    expires_at: dt.datetime


@dataclass(frozen=True)
class Session:
    id: int
    subject: str
    backend: str
    # The database user's account (see User.account_key); "" for other backends.
    account_key: str
    csrf: str
    expires_at: dt.datetime
    # Opened by a member of `admin` (see UISession.admin).
    admin: bool = False


class UISessionStore(TableStore):
    def create(
        self,
        subject: str,
        backend: str,
        account_key: str,
        now: dt.datetime,
        lifetime: dt.timedelta,
        *,
        admin: bool = False,
    ) -> tuple[str, Session]:
        """A new session; returns the cookie value (shown to nobody else) and the session."""
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        row = UISession(
            token_hash=hash_secret(token),
            subject=subject,
            subject_key=name_key(subject),
            backend=backend,
            account_key=account_key or None,
            csrf=csrf,
            created_at=now,
            expires_at=now + lifetime,
            admin=admin,
        )
        with self._db.session() as s:
            # Expired sessions go whenever a new one comes: the table stays small.
            s.execute(delete(UISession).where(UISession.expires_at <= now))
            s.add(row)
            s.flush()
            session_id = row.id
        return token, Session(
            session_id, subject, backend, account_key, csrf, row.expires_at, admin
        )

    def get(self, token: str, now: dt.datetime) -> Session | None:
        with self._db.engine.connect() as conn:
            row = conn.execute(
                select(
                    UISession.id,
                    UISession.subject,
                    UISession.backend,
                    UISession.account_key,
                    UISession.csrf,
                    UISession.expires_at,
                    UISession.admin,
                ).where(UISession.token_hash == hash_secret(token), UISession.expires_at > now)
            ).first()
        if row is None:
            return None
        return Session(
            row.id,
            row.subject,
            row.backend,
            row.account_key or "",
            row.csrf,
            row.expires_at,
            bool(row.admin),
        )

    def end(self, token: str) -> None:
        with self._db.session() as s:
            s.execute(delete(UISession).where(UISession.token_hash == hash_secret(token)))

    def end_id(self, session_id: int, now: dt.datetime) -> bool:
        """End one session; whether it was live."""
        query = delete(UISession).where(UISession.id == session_id, UISession.expires_at > now)
        return bool(self._db.change(query))

    def end_subject(self, subject: str, backend: str | None = None) -> int:
        """End every session of `subject` (any spelling), of one backend's account if given."""
        query = delete(UISession).where(UISession.subject_key == name_key(subject))
        if backend is not None:
            query = query.where(UISession.backend == backend)
        return self._db.change(query)

    def list(self, now: dt.datetime, subject: str | None = None) -> list[SessionInfo]:
        """Live sessions, oldest first; of `subject` (any spelling) if given."""
        query = (
            select(
                UISession.id,
                UISession.subject,
                UISession.backend,
                UISession.created_at,
                UISession.expires_at,
            )
            .where(UISession.expires_at > now)
            .order_by(UISession.id)
        )
        if subject is not None:
            query = query.where(UISession.subject_key == name_key(subject))
        with self._db.engine.connect() as conn:
            return [SessionInfo(*row) for row in conn.execute(query)]

"""Sign-ins through the OpenID provider under way, kept in the database so that any
instance can take the provider's answer, and only once.

A row is named by the SHA-256 of its `state` (256 random bits the browser
carries); `take` deletes the row it returns, and only the instance whose delete
removed it uses it, so a state replayed, even at once on two instances, signs
nobody in twice. Rows left behind (a sign-in never finished) go when they expire.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, func, select

from tokenserver.store.models import SSOLogin
from tokenserver.store.secret_hash import hash_secret
from tokenserver.store.table import TableStore

__all__ = ["MAX_PENDING", "PendingLogin", "SSOLoginStore", "TooManyPending"]

# Sign-ins under way at once, over every instance (each lives ten minutes at most).
MAX_PENDING = 10_000


class TooManyPending(Exception):
    """More sign-ins are under way than the table keeps: try again later."""


@dataclass(frozen=True)
class PendingLogin:
    nonce: str
    code_verifier: str
    return_to: str


class SSOLoginStore(TableStore):
    def add(
        self, state: str, login: PendingLogin, now: dt.datetime, lifetime: dt.timedelta
    ) -> None:
        row = SSOLogin(
            state_hash=hash_secret(state),
            nonce=login.nonce,
            code_verifier=login.code_verifier,
            return_to=login.return_to,
            created_at=now,
            expires_at=now + lifetime,
        )
        with self._db.session() as s:
            s.execute(delete(SSOLogin).where(SSOLogin.expires_at <= now))
            # Anyone may begin a sign-in: their number, not the table, is what is bounded.
            if (s.scalar(select(func.count()).select_from(SSOLogin)) or 0) >= MAX_PENDING:
                raise TooManyPending(f"{MAX_PENDING} sign-ins are under way")
            s.add(row)

    def take(self, state: str, now: dt.datetime) -> PendingLogin | None:
        """The live sign-in of this state, removed; None if there is none (any more)."""
        with self._db.session() as s:
            row = s.execute(
                select(
                    SSOLogin.id, SSOLogin.nonce, SSOLogin.code_verifier, SSOLogin.return_to
                ).where(SSOLogin.state_hash == hash_secret(state), SSOLogin.expires_at > now)
            ).first()
            if row is None:
                return None
            # Whoever deletes the row owns the sign-in; a racing instance deletes nothing.
            taken = s.execute(delete(SSOLogin).where(SSOLogin.id == row.id)).rowcount  # type: ignore[attr-defined]
        if taken != 1:
            return None
        return PendingLogin(row.nonce, row.code_verifier, row.return_to)

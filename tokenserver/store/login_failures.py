"""Failed logins, shared by every instance on one database.

A failure is a row of its own (key, time), never a counter updated in
place: failures that race on several instances are all counted, with no
read-modify-write to lose one. Reading a key's failures is one query on the
(key, at) index.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, delete, insert, or_, select

from tokenserver.store.db import Database
from tokenserver.store.models import LoginFailure

__all__ = ["MAX_KEY", "LoginFailureStore"]

MAX_KEY = 320  # the column's width

# On every password login: built and compiled once (see PreparedRead).
_RECENT = select(LoginFailure.key, LoginFailure.at).where(
    or_(LoginFailure.key == bindparam("key"), LoginFailure.key == bindparam("other")),
    LoginFailure.at > bindparam("since"),
)


class LoginFailureStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._recent = db.prepared(_RECENT)

    def recent(self, key: str, other: str | None, since: float) -> list[tuple[str, float]]:
        """(key, time) of every failure of `key` (and `other`) after `since`, in one query."""
        params = {"key": key[:MAX_KEY], "other": (other or key)[:MAX_KEY], "since": since}
        return [(str(k), float(at)) for k, at in self._recent.all(params)]

    def add(self, keys: Sequence[str], at: float) -> None:
        """One failure for each key, in one transaction."""
        with self._db.session() as s:
            s.execute(insert(LoginFailure), [{"key": k[:MAX_KEY], "at": at} for k in keys])

    def clear(self, key: str) -> None:
        with self._db.session() as s:
            s.execute(delete(LoginFailure).where(LoginFailure.key == key[:MAX_KEY]))

    def purge(self, before: float) -> int:
        """Delete failures at or before `before`; the number deleted."""
        return self._db.change(delete(LoginFailure).where(LoginFailure.at <= before))

"""What the stores of tokens with scopes of their own (CI and personal tokens) share.

A secret is 256 random bits after a prefix that secret scanners know,
shown once and kept only as its SHA-256; a token holds its name while it
may be live, and an expired one gives it up to the next token of the name;
each use records its time and the client's address.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from sqlalchemy import Update, update

from authcore.identity import ScopeLimit
from tokenserver.store.models import ScopedToken
from tokenserver.store.secret_hash import hash_secret
from tokenserver.store.table import TableStore

__all__ = ["ScopedTokenInfo", "ScopedTokenStore", "looks_like_secret"]

I = TypeVar("I")  # noqa: E741
# token_urlsafe(32): 43 characters.
_RANDOM_LENGTH = 43


def looks_like_secret(prefix: str, value: str) -> bool:
    """Whether `value` has the shape of a secret of this prefix (and could be one)."""
    return value.startswith(prefix) and len(value) == len(prefix) + _RANDOM_LENGTH


@dataclass(frozen=True)
class ScopedTokenInfo:
    """What may be shown of a token: never its secret or its hash."""

    id: int
    name: str
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


class ScopedTokenStore(TableStore):
    model: ClassVar[type[ScopedToken]]
    prefix: ClassVar[str]

    def _issue(
        self,
        free_expired: Update,
        shown: Callable[[Any], I],
        scopes: object,
        expires_at: dt.datetime,
        now: dt.datetime,
        created_by: str,
        **columns: object,
    ) -> tuple[I, str]:
        """A new row of `columns` and the rest, once `free_expired` has let an expired
        token give up the name: what `shown` makes of it, and the secret.

        Raises IntegrityError while a live token holds the name.
        """
        secret = self.prefix + secrets.token_urlsafe(32)
        row = self.model()
        for column, value in columns.items():
            setattr(row, column, value)
        row.scopes, row.secret_hash = str(scopes), hash_secret(secret)
        row.created_at, row.created_by, row.expires_at = now, created_by, expires_at
        with self._db.session() as s:
            s.execute(free_expired)
            s.add(row)
            s.flush()
            return shown(row), secret

    def record_use(self, token_id: int, now: dt.datetime, ip: str | None) -> None:
        model = self.model
        self._db.change(
            update(model)
            .where(model.id == token_id)
            .values(last_used_at=now, last_used_ip=(ip or "")[:64] or None)
        )

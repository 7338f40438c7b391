"""The audit trail's table: every token request and administrative act, never a secret."""

from __future__ import annotations

import datetime as dt
import operator
import typing
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

from sqlalchemy import Table, delete, func, select

from tokenserver.store.bulk_insert import BulkInsert
from tokenserver.store.db import Database
from tokenserver.store.models import AuditEvent

__all__ = [
    "OUTCOMES",
    "TOKEN_ACTION",
    "TOKEN_OUTCOMES",
    "AuditRecord",
    "AuditStore",
    "Outcome",
    "SeenAccount",
]

# Token requests end granted, partial or denied; administrative acts ok,
# not_found or conflict; either kind can end in any of the rest.
Outcome = Literal[
    "granted",
    "partial",
    "denied",
    # A device's poll before the person decided (RFC 8628's authorization_pending, slow_down).
    "pending",
    "ok",
    "not_found",
    "conflict",
    "forbidden",
    "bad_credentials",
    "backend_unavailable",
    "throttled",
    "invalid_request",
]
OUTCOMES: tuple[Outcome, ...] = typing.get_args(Outcome)
TOKEN_OUTCOMES: tuple[Outcome, ...] = tuple(
    o for o in OUTCOMES if o not in ("ok", "not_found", "conflict", "forbidden")
)
# The action of a token request's row (every other action is an administrative act).
TOKEN_ACTION = "token"  # noqa: S105 - a label, not a secret


@dataclass(frozen=True)
class AuditRecord:
    at: dt.datetime
    subject: str
    kind: str
    backend: str
    via: str
    client_ip: str
    user_agent: str
    service: str
    requested: str
    granted: str
    outcome: Outcome
    action: str = TOKEN_ACTION
    target: str = ""
    detail: str = ""

    @classmethod
    def from_row(cls, row: AuditEvent) -> AuditRecord:
        return cls(
            row.at,
            row.subject,
            row.kind,
            row.backend,
            row.via,
            row.client_ip,
            row.user_agent,
            row.service,
            row.requested,
            row.granted,
            row.outcome,  # type: ignore[arg-type]
            row.action,
            row.target,
            row.detail,
        )


@dataclass(frozen=True)
class SeenAccount:
    subject: str
    backend: str
    at: dt.datetime


_LIMITS = {
    "subject": 255,
    "user_agent": 512,
    "client_ip": 64,
    "service": 255,
    "backend": 32,
    "target": 255,
    "detail": 4096,
}


_FIELDS = tuple(f.name for f in fields(AuditRecord))
_VALUES = operator.attrgetter(*_FIELDS)
_CLIPPED = tuple((_FIELDS.index(name), limit) for name, limit in _LIMITS.items())


def _row(record: AuditRecord) -> Sequence[object]:
    values: tuple[Any, ...] = _VALUES(record)
    if any(len(values[i]) > limit for i, limit in _CLIPPED):
        clipped = list(values)
        for i, limit in _CLIPPED:
            clipped[i] = values[i][:limit]
        return clipped
    return values


class AuditStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        table = AuditEvent.__table__
        assert isinstance(table, Table)
        self._insert = BulkInsert(db.engine, table, _FIELDS)

    def add(self, records: Sequence[AuditRecord]) -> None:
        """One transaction for all of them, one statement (see `bulk_insert`)."""
        self._insert.add([_row(r) for r in records])

    def query(
        self,
        *,
        subject: str | None = None,
        outcome: str | None = None,
        action: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditRecord]:
        """Newest first; `offset` rows of that order skipped (for pages)."""
        q = (
            select(AuditEvent)
            .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
            .limit(limit)
            .offset(offset)
        )
        if subject is not None:
            q = q.where(AuditEvent.subject == subject)
        if outcome is not None:
            q = q.where(AuditEvent.outcome == outcome)
        if action is not None:
            q = q.where(AuditEvent.action == action)
        if since is not None:
            q = q.where(AuditEvent.at >= since)
        if until is not None:
            q = q.where(AuditEvent.at < until)
        with self._db.session() as s:
            return [AuditRecord.from_row(r) for r in s.scalars(q)]

    def seen_accounts(self, backends: Sequence[str], limit: int = 200) -> list[SeenAccount]:
        """Subjects that logged in through these backends, with when they were last seen."""
        q = (
            select(AuditEvent.subject, AuditEvent.backend, func.max(AuditEvent.at).label("at"))
            .where(AuditEvent.backend.in_(backends), AuditEvent.subject != "")
            .group_by(AuditEvent.subject, AuditEvent.backend)
            .order_by(AuditEvent.subject)
            .limit(limit)
        )
        with self._db.engine.connect() as conn:
            return [SeenAccount(r.subject, r.backend, r.at) for r in conn.execute(q)]

    def purge(self, before: dt.datetime, limit: int | None = None) -> int:
        """Delete rows older than `before` (at most `limit`, oldest first); the number deleted."""
        query = delete(AuditEvent).where(AuditEvent.at < before)
        if limit is not None:
            # One short transaction per chunk, so writers are never held up for long.
            oldest = select(AuditEvent.id).where(AuditEvent.at < before)
            query = delete(AuditEvent).where(
                AuditEvent.id.in_(oldest.order_by(AuditEvent.at).limit(limit))
            )
        return self._db.change(query)

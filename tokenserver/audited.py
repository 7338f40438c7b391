"""The base of the domain errors the audit trail records, each with its outcome."""

from __future__ import annotations

from typing import ClassVar

from tokenserver.store.audit import Outcome

__all__ = ["AuditedError"]


class AuditedError(Exception):
    """An error whose audit row says `outcome`; a subclass names its own in its class line."""

    outcome: ClassVar[Outcome] = "invalid_request"

    def __init_subclass__(cls, *, outcome: Outcome | None = None) -> None:
        super().__init_subclass__()
        if outcome is not None:
            cls.outcome = outcome

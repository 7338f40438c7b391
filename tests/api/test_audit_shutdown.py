"""The audit trail of a real token-server process that is stopped (SIGTERM) or killed (SIGKILL)
in the middle of a load, on its own SQLite database (PostgreSQL: tests/e2e/test_shared_postgres.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import FakeClock
from tests.support.token_load import (
    check_sigkill_loses_at_most_a_second,
    check_sigterm_writes_every_row,
)
from tests.support.tokenserver import TokenServer
from tokenserver.audit import AuditLog
from tokenserver.store.audit import AuditRecord, AuditStore
from tokenserver.store.db import Database


def _server(workdir: Path) -> tuple[TokenServer, str]:
    url = f"sqlite:///{workdir / 'tokenserver.db'}"
    return TokenServer(workdir, database_url=url).start(), url


@pytest.mark.peers
def test_sigterm_writes_every_answered_request(tmp_path: Path) -> None:
    server, url = _server(tmp_path)
    try:
        check_sigterm_writes_every_row(server, url)
    finally:
        server.stop()


@pytest.mark.peers
def test_sigkill_loses_at_most_the_last_second(tmp_path: Path) -> None:
    server, url = _server(tmp_path)
    try:
        check_sigkill_loses_at_most_a_second(server, url)
    finally:
        server.stop()


def _record(clock: FakeClock, subject: str) -> AuditRecord:
    return AuditRecord(
        clock.now, subject, "user", "database", "basic", "127.0.0.1", "ua", "registry", "", "",
        "granted",
    )  # fmt: skip


def test_close_writes_what_was_queued_and_later_records_too(
    database: Database, clock: FakeClock
) -> None:
    store = AuditStore(database)
    audit = AuditLog(store, dt.timedelta(days=90), clock)
    for i in range(50):
        audit.record(_record(clock, f"queued{i}"))
    audit.close()
    # A request that outlived the shutdown's grace period finishes after the writer stopped.
    audit.record(_record(clock, "late"))
    subjects = {r.subject for r in store.query(limit=100)}
    assert subjects == {f"queued{i}" for i in range(50)} | {"late"}


def test_a_batch_that_fails_for_any_reason_is_logged_and_the_trail_carries_on(
    database: Database, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = AuditStore(database)
    audit = AuditLog(store, dt.timedelta(days=90), clock)
    try:
        # A naive timestamp fails the batch outside the database (a ValueError, not SQLAlchemy's).
        audit.record(replace(_record(clock, "naive"), at=clock.now.replace(tzinfo=None)))
        assert audit.flush()
        audit.record(_record(clock, "after"))
        assert audit.flush()
        assert {r.subject for r in store.query(limit=10)} == {"after"}
    finally:
        audit.close()
    failures = [r for r in caplog.records if r.getMessage() == "audit records not written"]
    assert [(r.records, r.reason) for r in failures] == [(1, "ValueError")]  # type: ignore[attr-defined]

"""The audit trail's one-statement inserts (rows as one JSON document), on SQLite and on a
real PostgreSQL.

Every batch size lands whole, the values read back are the ones recorded
(aware datetimes, non-ASCII text, whatever JSON must escape, over-long
fields clipped), what is stored is what SQLAlchemy's own insert stores, a
character JSON cannot carry to the database costs only itself, and a batch
that fails leaves nothing behind and the next batch works.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import SQLAlchemyError

from tokenserver.store.audit import AuditRecord, AuditStore
from tokenserver.store.db import Database
from tokenserver.store.models import AuditEvent

AT = dt.datetime(2031, 2, 3, 4, 5, 6, 789012, tzinfo=dt.UTC)
_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'audit.db'}"
    else:
        url = request.getfixturevalue("postgres").url
    db = Database(url)
    db.migrate()
    try:
        yield db
    finally:
        db.dispose()


def records(subject: str, count: int, **changes: object) -> list[AuditRecord]:
    base = {
        "subject": subject,
        "kind": "user",
        "backend": "htpasswd",
        "via": "basic",
        "client_ip": "127.0.0.1",
        "user_agent": "docker/27 (ünïcödé ✓)",
        "service": "registry",
        "requested": "repository:team/app:pull,push",
        "granted": "repository:team/app:pull",
        "outcome": "partial",
        **changes,
    }
    return [
        AuditRecord(at=AT + dt.timedelta(microseconds=i), **base)  # type: ignore[arg-type]
        for i in range(count)
    ]


def stored(store: AuditStore, subject: str) -> list[AuditRecord]:
    return sorted(store.query(subject=subject, limit=10_000), key=lambda r: r.at)


@pytest.mark.parametrize("count", [1, 2, 3, 255, 511, 512, 513, 1023, 1100])
def test_every_batch_size_lands_whole_and_reads_back_as_recorded(
    database: Database, count: int
) -> None:
    store = AuditStore(database)
    subject = f"bulk-{count}-{next(_names)}"
    batch = records(subject, count)
    store.add(batch)
    assert stored(store, subject) == batch


def test_long_fields_are_clipped_and_the_rest_kept(database: Database) -> None:
    store = AuditStore(database)
    subject = f"clip-{next(_names)}"
    batch = records(subject, 3, user_agent="ü" * 2000, detail="{" + "x" * 9000 + "}")
    store.add(batch)
    rows = stored(store, subject)
    assert [r.user_agent for r in rows] == ["ü" * 512] * 3
    assert [len(r.detail) for r in rows] == [4096] * 3
    assert [r.granted for r in rows] == [r.granted for r in batch]


def test_text_that_json_escapes_reads_back_as_recorded(database: Database) -> None:
    store = AuditStore(database)
    subject = f"escapes-{next(_names)}"
    odd = "q\"uote\\back\\slash\nnew\tline\u2028\u2029 \x7f \x01 \U0001f433 $[0] '; --"
    batch = records(subject, 4, user_agent=odd, requested=odd, detail='{"k": "\\u0000"}')
    store.add(batch)
    assert stored(store, subject) == batch


def test_nul_and_lone_surrogates_become_replacement_characters_in_their_rows_only(
    database: Database,
) -> None:
    store = AuditStore(database)
    subject = f"odd-{next(_names)}"
    plain = records(subject, 3)
    nul = records(subject, 1, user_agent="a\x00b", service="reg\x00")
    surrogate = records(subject, 1, detail='{"x\ud800": "\udfff"}')
    both = records(subject, 1, requested="\x00\udc80")
    batch = [plain[0], nul[0], plain[1], surrogate[0], both[0], plain[2]]
    # Each odd row has an `at` of its own, so the order read back is the recorded one.
    batch = [replace(r, at=AT + dt.timedelta(seconds=i)) for i, r in enumerate(batch)]
    store.add(batch)
    rows = stored(store, subject)
    assert len(rows) == 6
    assert rows[0] == batch[0] and rows[2] == batch[2] and rows[5] == batch[5]
    assert (rows[1].user_agent, rows[1].service) == ("a\ufffdb", "reg\ufffd")
    assert rows[3].detail == '{"x\ufffd": "\ufffd"}'
    assert rows[4].requested == "\ufffd\ufffd"
    # Nothing else in those rows changed.
    assert replace(rows[1], user_agent=batch[1].user_agent, service=batch[1].service) == batch[1]
    assert replace(rows[3], detail=batch[3].detail) == batch[3]


def test_the_stored_values_are_those_of_an_orm_insert(database: Database) -> None:
    store = AuditStore(database)
    ours, theirs = f"ours-{next(_names)}", f"theirs-{next(_names)}"
    store.add(records(ours, 1))
    (record,) = records(theirs, 1)
    with database.engine.begin() as conn:
        conn.execute(insert(AuditEvent), [vars(record)])
    names = [c.name for c in AuditEvent.__table__.c if c.name not in ("id", "subject")]
    # A textual query: the driver's own values (the text SQLite keeps), unconverted.
    query = text(
        f"SELECT {', '.join(names)} FROM audit_events"  # noqa: S608 (the model's column names)
        " WHERE subject IN (:ours, :theirs) ORDER BY subject"
    )
    with database.engine.connect() as conn:
        raw = conn.execute(query, {"ours": ours, "theirs": theirs}).all()
    assert len(raw) == 2
    assert raw[0] == raw[1]


def test_a_failed_batch_stores_nothing_and_the_next_one_works(database: Database) -> None:
    store = AuditStore(database)
    subject = f"atomic-{next(_names)}"
    # NOT NULL violated by the last row only.
    bad = [*records(subject, 515), *records(subject, 1, outcome=None)]
    with pytest.raises(SQLAlchemyError):
        store.add(bad)
    assert stored(store, subject) == []
    good = records(subject, 5)
    store.add(good)
    assert stored(store, subject) == good
    with database.engine.connect() as conn:
        count = conn.execute(select(AuditEvent.id).where(AuditEvent.subject == subject)).all()
    assert len(count) == 5


def test_nothing_to_write_is_no_statement(database: Database) -> None:
    AuditStore(database).add([])
    with database.engine.connect() as conn:
        assert conn.execute(select(AuditEvent.id).where(AuditEvent.subject == "")).all() == []

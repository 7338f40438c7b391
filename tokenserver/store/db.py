"""Engine set-up and schema migrations."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Delete, Engine, Update, create_engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

import tokenserver

__all__ = ["Database", "PreparedRead", "driver_connection", "migrations_dir"]

# Any constant works; it only has to be the same for every instance.
_MIGRATION_LOCK_ID = 0x70CE5E


def migrations_dir() -> Path:
    package = Path(tokenserver.__file__).parent
    for candidate in (package / "_alembic", package.parent / "alembic"):
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("the alembic migrations are not installed")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the CLI write while a server reads; the timeout waits out a writer.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class PreparedRead:
    """A read compiled once for one engine and run on a raw pooled connection.

    For a statement on every request: SQLAlchemy's per-execution machinery
    costs several times the query itself, and far more once a dozen request
    threads share the interpreter (measured on SQLite, the throttle's read:
    through a Connection 19 000 reads/s from one thread and 6 000-7 500 from
    16; this way 73 000 and 69 000). Driver errors come out as SQLAlchemy's,
    like any other query's.
    """

    def __init__(self, engine: Engine, statement: ClauseElement) -> None:
        compiled = statement.compile(dialect=engine.dialect)
        assert isinstance(compiled, SQLCompiler)
        self._engine = engine
        self._sql = compiled.string
        # Positional paramstyles (SQLite's qmark) need the names in order.
        self._order = compiled.positiontup

    def all(self, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        args: Any = dict(params) if self._order is None else tuple(params[n] for n in self._order)
        with driver_connection(self._engine, self._sql, args) as conn:
            cursor = conn.cursor()
            try:
                cursor.execute(self._sql, args)
                return [tuple(row) for row in cursor.fetchall()]
            finally:
                cursor.close()


@contextmanager
def driver_connection(engine: Engine, sql: str, args: Any) -> Iterator[Any]:
    """A pooled DBAPI connection; driver errors come out as SQLAlchemy's, naming `sql`.

    Back to the pool afterwards, which rolls back whatever was not committed;
    after an error the pool opens a fresh connection next time.
    """
    dbapi_error = engine.dialect.loaded_dbapi.Error
    try:
        conn = engine.raw_connection()
    except dbapi_error as exc:
        raise DBAPIError.instance(sql, args, exc, dbapi_error) from exc
    try:
        yield conn
    except dbapi_error as exc:
        conn.invalidate()
        raise DBAPIError.instance(sql, args, exc, dbapi_error) from exc
    finally:
        conn.close()


class Database:
    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        # Beyond `pool_size`, up to 10 more connections open for a burst and
        # close when they are handed back.
        kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_size": pool_size}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False}
        self.engine: Engine = create_engine(url, **kwargs)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def change(self, statement: Update | Delete) -> int:
        """Run one UPDATE or DELETE in a transaction of its own; the rows it changed."""
        with self.session() as s:
            return int(s.execute(statement).rowcount)  # type: ignore[attr-defined]

    def prepared(self, statement: ClauseElement) -> PreparedRead:
        return PreparedRead(self.engine, statement)

    def migrate(self) -> None:
        """Bring the schema to the newest revision; safe when several instances start."""
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(migrations_dir()))
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def dispose(self) -> None:
        self.engine.dispose()

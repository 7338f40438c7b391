"""Upgrading a database that holds rows, on any backend the server runs on."""

from __future__ import annotations

import datetime as dt
import re

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import text

from tokenserver.names import name_key
from tokenserver.store.db import Database, migrations_dir
from tokenserver.store.users import account_key

__all__ = ["check_account_keys_upgrade", "migrate_to"]


def migrate_to(db: Database, revision: str) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def check_account_keys_upgrade(url: str) -> None:
    """Revision 0007 on a database of 0006 with users, web sessions and refresh tokens."""
    db = Database(url)
    try:
        migrate_to(db, "0006")
        now = dt.datetime(2030, 1, 1)
        later = now + dt.timedelta(hours=1)
        with db.engine.begin() as conn:
            for user_id, name, password_hash in ((1, "Alice", "$2b$04$a"), (2, "bob", "$2b$04$b")):
                conn.execute(
                    text(
                        "INSERT INTO users (id, name, name_key, password_hash, disabled,"
                        " created_at, updated_at) VALUES (:id, :name, :key, :hash, false, :t, :t)"
                    ),
                    {"id": user_id, "name": name, "key": name_key(name), "hash": password_hash,
                     "t": now},
                )  # fmt: skip
            for session_id, subject, backend in (
                (1, "Alice", "database"),
                (2, "hana", "htpasswd"),
                (3, "ghost", "database"),
            ):
                conn.execute(
                    text(
                        "INSERT INTO ui_sessions (id, token_hash, subject, backend, csrf,"
                        " created_at, expires_at) VALUES (:id, :hash, :subject, :backend, 'c',"
                        " :t, :later)"
                    ),
                    {"id": session_id, "hash": f"{session_id:064x}", "subject": subject,
                     "backend": backend, "t": now, "later": later},
                )  # fmt: skip
            conn.execute(
                text(
                    "INSERT INTO refresh_tokens (id, token_hash, subject, service, client_id,"
                    " created_at, expires_at) VALUES (1, :hash, 'Alice', 'registry', 'docker',"
                    " :t, :later)"
                ),
                {"hash": "f" * 64, "t": now, "later": later},
            )
        db.migrate()
        with db.engine.connect() as conn:
            users = dict(conn.execute(text("SELECT name, account_id FROM users")).all())
            sessions = {
                row.subject: (row.subject_key, row.account_key)
                for row in conn.execute(
                    text("SELECT subject, subject_key, account_key FROM ui_sessions")
                )
            }
            tokens = conn.execute(text("SELECT backend, account_key FROM refresh_tokens")).all()
        assert all(re.fullmatch(r"[0-9a-f]{32}", v) for v in users.values()), users
        assert users["Alice"] != users["bob"]
        # The session of a database user is bound to the user of its name; others have no key.
        assert sessions == {
            "Alice": ("alice", account_key(users["Alice"], "$2b$04$a")),
            "hana": ("hana", None),
            "ghost": ("ghost", None),
        }
        # Refresh tokens from before keep no backend: checked by subject, as they were.
        assert [tuple(t) for t in tokens] == [(None, None)]
    finally:
        db.dispose()

"""The personal token store: hashed secrets, one live name per owner, revocation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import inspect, text

from authcore.identity import ScopeLimit
from tests.support.migrations import migrate_to
from tokenserver.names import InvalidName
from tokenserver.store.db import Database, migrations_dir
from tokenserver.store.personal_tokens import PREFIX, Owner, PersonalTokenExists, PersonalTokenStore
from tokenserver.store.scoped_tokens import looks_like_secret

NOW = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
SCOPES = ScopeLimit.parse(["repository:alice/*:pull"])
ALICE = Owner("alice", "database", "k" * 64)


def test_secrets_have_one_shape(database: Database) -> None:
    store = PersonalTokenStore(database)
    _info, secret = store.create(ALICE, "laptop", SCOPES, NOW + DAY, NOW)
    assert looks_like_secret(PREFIX, secret)
    for value in ("", "tspat_", secret[:-1], secret + "x", "tsci_" + secret[6:], "x" * 49):
        assert not looks_like_secret(PREFIX, value)


def test_found_by_secret_while_live_with_its_owner(database: Database) -> None:
    store = PersonalTokenStore(database)
    info, secret = store.create(ALICE, "laptop", SCOPES, NOW + DAY, NOW, created_by="root")
    found = store.find_live(secret, NOW)
    assert found is not None and (found.id, found.name, found.owner) == (info.id, "laptop", ALICE)
    assert found.scopes == SCOPES
    assert store.find_live(secret, NOW + DAY) is None
    assert store.find_live(secret + "\udcff", NOW) is None
    store.record_use(info.id, NOW, "127.0.0.1")
    (listed,) = store.list("ALICE")
    assert (listed.last_used_at, listed.last_used_ip, listed.created_by) == (
        NOW,
        "127.0.0.1",
        "root",
    )
    assert store.revoke("alice", "laptop", NOW) == 1
    assert store.find_live(secret, NOW) is None and store.revoke("alice", "laptop", NOW) == 0


def test_one_live_token_per_name_and_owner(database: Database) -> None:
    store = PersonalTokenStore(database)
    store.create(ALICE, "laptop", SCOPES, NOW + DAY, NOW)
    with pytest.raises(PersonalTokenExists):
        store.create(ALICE, "LAPTOP", SCOPES, NOW + DAY, NOW)
    with pytest.raises(PersonalTokenExists):
        store.create(Owner("Alice", "ldap"), "laptop", SCOPES, NOW + DAY, NOW)
    store.create(Owner("bob", "database"), "laptop", SCOPES, NOW + DAY, NOW)
    # Expired, the name is free again.
    store.create(ALICE, "laptop", SCOPES, NOW + 2 * DAY, NOW + DAY)
    assert store.count_live("alice", NOW + DAY) == 1
    assert [t.state(NOW + DAY) for t in store.list("alice")] == ["expired", "live"]
    with pytest.raises(InvalidName):
        store.create(ALICE, "a b", SCOPES, NOW + DAY, NOW)


def test_revoking_an_owners_tokens_of_one_backend(database: Database) -> None:
    store = PersonalTokenStore(database)
    store.create(ALICE, "a", SCOPES, NOW + DAY, NOW)
    store.create(ALICE, "b", SCOPES, NOW + DAY, NOW)
    store.create(Owner("alice", "ldap"), "c", SCOPES, NOW + DAY, NOW)
    assert store.revoke_owner("Alice", NOW, "database") == 2
    assert [t.state(NOW) for t in store.list()] == ["revoked", "revoked", "live"]


def test_sessions_from_before_were_admins_and_the_revision_goes_back(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        migrate_to(db, "0007")
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO ui_sessions (id, token_hash, subject, subject_key, backend, csrf,"
                    " created_at, expires_at) VALUES (1, :hash, 'root', 'root', 'database', 'c',"
                    " :t, :t)"
                ),
                {"hash": "a" * 64, "t": dt.datetime(2030, 1, 1)},
            )
        db.migrate()
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT admin FROM ui_sessions")).scalar_one() in (1, True)
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(migrations_dir()))
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0007")
        with db.engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            columns = {c["name"] for c in inspect(conn).get_columns("ui_sessions")}
        assert "personal_tokens" not in tables and "admin" not in columns
    finally:
        db.dispose()

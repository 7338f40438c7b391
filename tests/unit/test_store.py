"""The database layer: migrations match the models, users, refresh tokens."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.support.migrations import check_account_keys_upgrade
from tokenserver.config import Config
from tokenserver.store.db import Database
from tokenserver.store.models import Base
from tokenserver.store.refresh_tokens import RefreshTokenStore
from tokenserver.store.users import UserExists, UserNotFound, UserStore

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
StartClient = Callable[[Config], AbstractContextManager[TestClient]]


def test_migrations_match_the_models_and_are_idempotent(database: Database) -> None:
    database.migrate()  # a second time: nothing to do, no error
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_upgrading_binds_web_sessions_to_accounts(tmp_path: Path) -> None:
    check_account_keys_upgrade(f"sqlite:///{tmp_path / 'old.db'}")


def test_the_server_keeps_the_configured_pool(
    make_config: Callable[..., Config], start_client: StartClient
) -> None:
    with start_client(make_config({"database": {"pool_size": 7}})) as client:
        assert client.app.state.services.database.engine.pool.size() == 7  # type: ignore[attr-defined]


def test_users(users: UserStore) -> None:
    users.add("alice", "$2b$04$hash", ["b", "a", "a"])
    info = users.get("alice")
    assert info is not None
    assert (info.name, info.password_hash, info.disabled, info.groups) == (
        "alice",
        "$2b$04$hash",
        False,
        ("a", "b"),
    )
    assert info.created_at.tzinfo is not None
    with pytest.raises(UserExists):
        users.add("alice", "$2b$04$other")
    users.set_groups("alice", ["z"])
    assert users.get("alice").groups == ("z",)  # type: ignore[union-attr]
    for change in (
        lambda: users.set_password("ghost", "h"),
        lambda: users.set_disabled("ghost", True),
        lambda: users.set_groups("ghost", []),
        lambda: users.delete("ghost"),
    ):
        with pytest.raises(UserNotFound):
            change()


def test_a_recreated_user_does_not_inherit_groups(users: UserStore) -> None:
    users.add("alice", "h1", ["admin"])
    users.delete("alice")
    users.add("alice", "h2")
    assert users.get("alice").groups == ()  # type: ignore[union-attr]


def test_refresh_tokens_are_stored_hashed(database: Database) -> None:
    store = RefreshTokenStore(database)
    value = store.issue("alice", "registry", "docker", DAY, NOW, backend="database")
    assert value.startswith("rt_") and len(value) > 40
    with database.engine.connect() as conn:
        (stored,) = conn.execute(text("SELECT token_hash FROM refresh_tokens")).scalars()
    assert stored == hashlib.sha256(value.encode()).hexdigest()

    info = store.use(value, NOW + dt.timedelta(hours=1))
    assert info is not None
    assert (info.subject, info.service, info.client_id) == ("alice", "registry", "docker")
    assert info.last_used_at == NOW + dt.timedelta(hours=1)
    assert store.use(value + "x", NOW) is None
    assert store.use(value, NOW + DAY) is None  # expiry is exclusive


def test_refresh_token_revocation(database: Database) -> None:
    store = RefreshTokenStore(database)
    a1 = store.issue("alice", "registry", "docker", DAY, NOW, backend="database")
    a2 = store.issue("alice", "registry", "podman", DAY, NOW, backend="database")
    b = store.issue("bob", "registry", "docker", DAY, NOW, backend="database")
    first = store.list("alice")[0]
    assert store.revoke(first.id, NOW)
    assert not store.revoke(first.id, NOW)  # already revoked
    assert store.use(a1, NOW) is None
    assert store.use(a2, NOW) is not None
    assert store.revoke_subject("alice", NOW) == 1
    assert store.use(a2, NOW) is None
    assert store.use(b, NOW) is not None
    assert [t.subject for t in store.list()] == ["alice", "alice", "bob"]

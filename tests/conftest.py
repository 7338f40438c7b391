"""Shared fixtures for the fast unit and API tests: no external services.

Every test gets its own directory with a config file, a freshly generated
signing key and an SQLite database; `client` is the real app (lifespan run)
behind Starlette's TestClient, driven by a clock the test can move.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import shutil
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml

from tests.support.ldap import LdapDirectory, Slapd
from tests.support.peers import forbid_peers
from tests.support.swift import Swift
from tokenserver.app import create_app
from tokenserver.config import Config, load_config
from tokenserver.keys import generate_key
from tokenserver.passwords import hash_password
from tokenserver.store.db import Database
from tokenserver.store.users import UserStore

with warnings.catch_warnings():
    # Starlette nags about httpx vs httpx2; the transport works the same.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SERVICE = "registry"
ISSUER = "test-issuer"
FAST_ROUNDS = 4
DEFAULT_DATABASE = "sqlite:///tokenserver.db"


class FakeClock:
    """A wall clock that only moves when the test says so (UTC, whole seconds)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.now = (start or dt.datetime.now(dt.UTC)).replace(microsecond=0)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


class LeakGuard:
    """Secret values a test handled; none may show up in any log record."""

    def __init__(self) -> None:
        self.values: set[str] = set()

    def add(self, value: str) -> str:
        self.values.add(value)
        return value

    def found_in(self, text: str) -> list[str]:
        return sorted(v for v in self.values if v and v in text)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture(scope="session")
def real_peer() -> None:
    """Requested by each fixture that starts a real peer or a server process.

    A test that uses one, however deep, is marked `peers`: `make check` leaves
    it to `make test`. A test starting a peer in its own body carries the mark
    itself; one that starts a peer without it fails (`Peer.spawn`).
    """


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "real_peer" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.peers)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    marked = any(item.iter_markers("peers")) or any(item.iter_markers("e2e"))
    forbid_peers(None if marked else item.nodeid)
    try:
        return (yield)
    finally:
        forbid_peers(None)


@pytest.fixture
def leak_guard() -> LeakGuard:
    return LeakGuard()


@pytest.fixture(autouse=True)
def _no_secret_logged(caplog: pytest.LogCaptureFixture, leak_guard: LeakGuard) -> Iterator[None]:
    """Across the whole session: no record (message or extra field) carries a secret."""
    caplog.set_level(logging.INFO)
    yield
    for record in caplog.records:
        rendered = record.getMessage() + repr(vars(record))
        leaked = leak_guard.found_in(rendered)
        assert not leaked, f"secret in log record {record.name}: {record.getMessage()!r}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    generate_key(path)
    return path


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return tmp_path / "tokenserver.yaml"


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite database migrated to the newest schema once for the whole run.

    Each test's database starts as a copy: migrating a new file takes half a
    second, several minutes over the suite; finding a copy at the newest
    revision takes a few milliseconds, and the schema is the same.
    """
    path = tmp_path_factory.mktemp("schema") / "tokenserver.db"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    db.dispose()
    return path


@pytest.fixture
def make_config(
    config_path: Path, keys_dir: Path, migrated_database: Path
) -> Callable[..., Config]:
    """Write the config file (relative paths, as an operator would) and load it."""

    def make(extra: dict[str, Any] | None = None) -> Config:
        data = _merge(
            {
                "token": {"issuer": ISSUER, "service": SERVICE, "keys_dir": keys_dir.name},
                "database": {"url": DEFAULT_DATABASE},
                "users": {"bcrypt_cost": FAST_ROUNDS},
            },
            extra or {},
        )
        database = config_path.parent / DEFAULT_DATABASE.removeprefix("sqlite:///")
        if data["database"]["url"] == DEFAULT_DATABASE and not database.exists():
            shutil.copyfile(migrated_database, database)
        config_path.write_text(yaml.safe_dump(data))
        return load_config(config_path, environ={})

    return make


@pytest.fixture
def config(make_config: Callable[..., Config]) -> Config:
    return make_config()


@pytest.fixture
def start_client(clock: FakeClock) -> Callable[[Config], AbstractContextManager[TestClient]]:
    @contextmanager
    def start(cfg: Config) -> Iterator[TestClient]:
        with TestClient(create_app(cfg, clock=clock)) as client:
            yield client

    return start


@pytest.fixture
def client(
    config: Config, start_client: Callable[[Config], AbstractContextManager[TestClient]]
) -> Iterator[TestClient]:
    with start_client(config) as c:
        yield c


@pytest.fixture
def database(config: Config) -> Iterator[Database]:
    db = Database(config.database.url)
    db.migrate()
    yield db
    db.dispose()


@pytest.fixture
def users(database: Database) -> UserStore:
    return UserStore(database)


@pytest.fixture
def add_user(users: UserStore, leak_guard: LeakGuard) -> Callable[..., str]:
    """Add a user to the database; return the (distinctive) password."""

    def add(
        name: str, password: str | None = None, groups: tuple[str, ...] = (), disabled: bool = False
    ) -> str:
        password = password or f"pw-{name}-{secrets.token_hex(6)}"
        leak_guard.add(password)
        users.add(name, hash_password(password, rounds=FAST_ROUNDS), groups)
        if disabled:
            users.set_disabled(name, True)
        return password

    return add


@pytest.fixture
def decode_token(client: TestClient, config: Config) -> Callable[[str], dict[str, Any]]:
    """Verify a token as a registry would: the key by `kid` from our JWKS."""

    def decode(token: str) -> dict[str, Any]:
        jwks = client.get("/.well-known/jwks.json").json()
        kid = jwt.get_unverified_header(token)["kid"]
        (jwk,) = (k for k in jwks["keys"] if k["kid"] == kid)
        payload: dict[str, Any] = jwt.decode(
            token,
            jwt.PyJWK(jwk).key,
            algorithms=["ES256", "RS256"],
            audience=config.token.services,
            issuer=config.token.issuer,
            options={"require": ["exp", "nbf", "iat", "iss", "aud", "jti"]},
        )
        return payload

    return decode


@pytest.fixture(scope="session")
def swift(tmp_path_factory: pytest.TempPathFactory, real_peer: None) -> Iterator[Swift]:
    """One real Swift with its S3 API for the whole run; each test makes its own bucket."""
    with Swift(tmp_path_factory.mktemp("swift")) as store:
        yield store


@pytest.fixture(scope="session")
def slapd(real_peer: None) -> Iterator[Slapd]:
    """A real OpenLDAP server with TLS and no users: each test adds its own, uniquely named."""
    with Slapd(tls=True) as server:
        yield server


@pytest.fixture
def directory(slapd: Slapd, leak_guard: LeakGuard) -> LdapDirectory:
    """The shared slapd, with helpers that make unique names and remember secrets."""
    return LdapDirectory(slapd, leak_guard)

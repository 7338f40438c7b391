"""Both services as real processes, each behind the guarded HTTP protocol.

`quick` runs each with one-second header and body timeouts and 127.0.0.1 as
a trusted proxy; `standard` with the shipped defaults. Tests take either and
run once per service.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from authcore.scope import parse_scopes
from tests.support.registry_proxy import RegistryProxy
from tests.support.tokenserver import TokenServer
from tokenserver.issuer import Issuer
from tokenserver.keys import generate_key, load_keys

ISSUER, SERVICE = "serving-test", "registry"
QUICK = {"header_timeout": 1, "body_timeout": 1, "trusted_proxies": ["127.0.0.1"]}
SERVICES = ["tokenserver", "registry"]


@dataclass
class Served:
    """One running service, as the tests see it."""

    name: str
    port: int
    url: str
    pid: int
    log_text: Callable[[], str]
    # A path answered without credentials, and its status.
    probe: str
    probe_status: int
    access_logger: str
    limits: dict[str, Any]

    def log_entries(self, offset: int = 0) -> list[dict[str, Any]]:
        lines = self.log_text()[offset:].splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def log_offset(self) -> int:
        return len(self.log_text())

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


@pytest.fixture(scope="session")
def serving_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keys = tmp_path_factory.mktemp("serving") / "keys"
    generate_key(keys)
    return keys


@pytest.fixture(scope="session")
def bearer(serving_keys: Path) -> Callable[..., dict[str, str]]:
    """Authorization for the registry, granting the given scope strings."""
    issuer = Issuer(load_keys(serving_keys), ISSUER, 300)

    def mint(*scopes: str) -> dict[str, str]:
        token = issuer.issue("tester", SERVICE, parse_scopes(scopes), dt.datetime.now(dt.UTC))
        return {"Authorization": f"Bearer {token.token}"}

    return mint


def _start(name: str, workdir: Path, keys: Path, limits: dict[str, Any]) -> Iterator[Served]:
    if name == "tokenserver":
        token = TokenServer(
            workdir, issuer=ISSUER, keys_dir=keys, extra={"server": dict(limits)}
        ).start()
        try:
            yield Served(
                name,
                token.port,
                token.url,
                token.pid,
                token.log_text,
                "/healthz",
                200,
                "tokenserver.access",
                limits,
            )
        finally:
            token.stop()
        return
    auth = {
        "realm": "http://127.0.0.1:1/token",
        "service": SERVICE,
        "issuer": ISSUER,
        "rootcertbundle": str(keys / "bundle.pem"),
    }
    registry = RegistryProxy(workdir, auth, extra={"http": dict(limits)}).start()
    try:
        yield Served(
            name,
            registry.port,
            registry.url,
            registry.pid,
            registry.log_text,
            "/v2/",
            401,
            "registry_proxy.access",
            limits,
        )
    finally:
        registry.stop()


@pytest.fixture(scope="session", params=SERVICES)
def quick(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    serving_keys: Path,
    real_peer: None,
) -> Iterator[Served]:
    yield from _start(request.param, tmp_path_factory.mktemp("quick"), serving_keys, QUICK)


@pytest.fixture(scope="session", params=SERVICES)
def standard(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    serving_keys: Path,
    real_peer: None,
) -> Iterator[Served]:
    yield from _start(request.param, tmp_path_factory.mktemp("standard"), serving_keys, {})


@pytest.fixture(scope="session")
def registry(
    tmp_path_factory: pytest.TempPathFactory, serving_keys: Path, real_peer: None
) -> Iterator[Served]:
    """The registry alone, with the quick limits."""
    yield from _start("registry", tmp_path_factory.mktemp("registry"), serving_keys, QUICK)

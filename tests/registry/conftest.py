"""An in-process registry app over a temporary filesystem root, with a token minter."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from authcore.scope import Access, parse_scopes
from registry_proxy.app import create_app
from registry_proxy.config import Config
from tokenserver.issuer import Issuer
from tokenserver.keys import generate_key, load_keys

ISSUER, SERVICE = "test-issuer", "registry"

Mint = Callable[..., dict[str, str]]


@pytest.fixture
def storage_root(tmp_path: Path) -> Path:
    return tmp_path / "storage"


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    d = tmp_path / "keys"
    generate_key(d, "ES256")
    return d


@pytest.fixture
def mint(keys_dir: Path) -> Mint:
    """Authorization headers for a token granting the given scope strings."""
    issuer = Issuer(load_keys(keys_dir), ISSUER, 300)

    def mint(*scopes: str, subject: str = "tester") -> dict[str, str]:
        access: list[Access] = parse_scopes(scopes)
        token = issuer.issue(subject, SERVICE, access, dt.datetime.now(dt.UTC)).token
        return {"Authorization": f"Bearer {token}"}

    return mint


def token_auth(keys_dir: Path) -> dict[str, Any]:
    """The `auth` section of a registry trusting the minter's keys."""
    return {
        "token": {
            "realm": "http://127.0.0.1:1/token",
            "service": SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": str(keys_dir / "bundle.pem"),
        }
    }


@pytest.fixture
def registry(storage_root: Path, keys_dir: Path) -> Iterator[TestClient]:
    config = Config.model_validate(
        {
            "storage": {
                "filesystem": {"rootdirectory": str(storage_root)},
                "delete": {"enabled": True},
            },
            "auth": token_auth(keys_dir),
        }
    )
    with TestClient(create_app(config)) as client:
        yield client


def raw_request(
    registry: TestClient,
    method: str,
    path: str,
    headers: dict[str, str],
    body: list[dict[str, object]] | None = None,
    query: bytes = b"",
) -> list[int]:
    """Send a request exactly as given (no client-side dot resolution) straight to the app.

    `body` is the sequence of ASGI receive messages (e.g. a chunk, then a
    disconnect); the statuses of any responses started are returned.
    """
    messages = list(body or [{"type": "http.request", "body": b"", "more_body": False}])
    statuses: list[int] = []

    async def call() -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
            "state": {},
            "app": registry.app,
        }

        async def receive() -> dict[str, object]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(int(message["status"]))  # type: ignore[call-overload]

        await registry.app(scope, receive, send)  # type: ignore[arg-type]

    assert registry.portal is not None, "use the client as a context manager"
    registry.portal.call(call)
    return statuses

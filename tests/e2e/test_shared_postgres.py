"""Two token-server instances over one PostgreSQL database share refresh tokens."""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx
import pytest

from tests.support.peers import Postgres
from tests.support.tokenserver import TokenServer

pytestmark = pytest.mark.e2e


def refresh(server: TokenServer, refresh_token: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "service": "registry",
            "client_id": "test",
            "scope": "repository:pat/app:pull",
        },
    )


def test_refresh_token_from_one_instance_is_honoured_and_revoked_on_the_other(
    postgres: Postgres, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    first = TokenServer(tmp_path / "a", database_url=postgres.url, keys_dir=keys)
    second = TokenServer(tmp_path / "b", database_url=postgres.url, keys_dir=keys)
    with contextlib.ExitStack() as running:
        # Both start at once: the schema migration must not race.
        for server in (first, second):
            server.spawn()
            running.callback(server.stop)
        first.wait_ready()
        second.wait_ready()

        first.add_user("pat", "pat-pw-1")
        login = httpx.get(
            f"{first.url}/token",
            params={"service": "registry", "offline_token": "true", "client_id": "test"},
            auth=("pat", "pat-pw-1"),
        )
        assert login.status_code == 200
        value = login.json()["refresh_token"]

        answer = refresh(second, value)
        assert answer.status_code == 200, answer.text
        assert answer.json()["scope"] == "repository:pat/app:pull"

        # A user added through one instance's CLI logs in on the other.
        second.add_user("quinn", "quinn-pw-1")
        assert (
            httpx.get(
                f"{first.url}/token",
                params={"service": "registry"},
                auth=("quinn", "quinn-pw-1"),
            ).status_code
            == 200
        )

        second.cli("refresh-token", "revoke", "--user", "pat")
        revoked = refresh(first, value)
        assert revoked.status_code == 400
        assert revoked.json()["error"] == "invalid_grant"

"""Two token-server instances over one PostgreSQL database share refresh tokens."""

from __future__ import annotations

import concurrent.futures
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


def test_races_across_two_instances_end_in_the_database(postgres: Postgres, tmp_path: Path) -> None:
    """Uniqueness and row locks hold across processes, not just inside one."""
    keys = tmp_path / "keys"
    extra = {"users": {"bcrypt_cost": 4}}
    servers = [
        TokenServer(tmp_path / name, database_url=postgres.url, keys_dir=keys, extra=extra)
        for name in ("c", "d")
    ]
    with contextlib.ExitStack() as running:
        for server in servers:
            running.enter_context(server)
        servers[0].add_user("boss", "boss-pw-1", "admin")
        clients = [
            running.enter_context(httpx.Client(base_url=s.url, auth=("boss", "boss-pw-1")))
            for s in servers
        ]
        body = {"name": "ci-pg", "scopes": ["repository:pg/*:pull"], "ttl": 600}
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = sorted(
                pool.map(
                    lambda i: clients[i % 2].post("/admin/v1/ci-tokens", json=body).status_code,
                    range(8),
                )
            )
        assert statuses == [201] + [409] * 7

        clients[0].post("/admin/v1/users", json={"name": "pgracer", "password": "pw-pg-1"})

        def hit(i: int) -> int:
            client = clients[i % 2]
            if i % 3 == 0:
                return client.delete("/admin/v1/users/pgracer").status_code
            return client.put(
                "/admin/v1/users/pgracer/groups", json={"groups": [f"g{i}", "shared"]}
            ).status_code

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            seen = set(pool.map(hit, range(60)))
        assert seen <= {200, 204, 404}, seen
        assert 404 in seen
        for server in servers:
            log = server.log_text()
            assert "Traceback" not in log and '"level": "error"' not in log

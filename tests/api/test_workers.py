"""`server.workers`: several worker processes behind one address serve as one server.

Every worker signs with the same keys, reads the same database (a user added
or a CI token revoked through the CLI holds on each), writes the audit trail
of each request before a stop completes, and goes when its supervisor goes.
Which worker answered is read from the access log: request ids start with a
prefix of the worker's own.
"""

from __future__ import annotations

import concurrent.futures
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import pytest

from tests.support.peers import kill_pid, pid_alive
from tests.support.token_load import check_sigterm_writes_every_row
from tests.support.tokenserver import TokenServer

WORKERS = 2
ROUNDS = 20  # bounds every "until each worker has answered" loop
EXTRA = {"server": {"workers": WORKERS}, "users": {"bcrypt_cost": 4}}


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def fresh_gets(
    server: TokenServer, count: int, auth: tuple[str, str] | None = None, scope: str = ""
) -> list[httpx.Response]:
    """`count` GET /token, each on a connection of its own, eight at a time."""

    def one(_: int) -> httpx.Response:
        params = {"service": "registry", "scope": scope} if scope else {"service": "registry"}
        headers = {"Connection": "close"}
        return httpx.get(f"{server.url}/token", params=params, auth=auth, headers=headers)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def workers_answering(server: TokenServer, offset: int) -> set[str]:
    """Request-id prefixes of the GET /token lines logged after byte `offset`."""
    lines = server.log_text()[offset:].splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    return {
        e["request_id"][:8] for e in entries if e.get("msg") == "request" and e["path"] == "/token"
    }


def on_every_worker(server: TokenServer, check: Callable[[], list[httpx.Response]]) -> None:
    """Run `check` (whose answers it asserts on) until the log shows every worker took part."""
    offset = len(server.log_text())
    for _ in range(ROUNDS):
        check()
        if len(workers_answering(server, offset)) == WORKERS:
            return
    pytest.fail(f"not every worker answered in {ROUNDS} rounds")


@pytest.mark.peers
def test_workers_share_keys_users_and_revocations(tmp_path: Path) -> None:
    with TokenServer(tmp_path, extra=EXTRA) as server:
        assert len(children(server.pid)) == WORKERS
        jwks = httpx.get(f"{server.url}/.well-known/jwks.json").json()
        keys = {k["kid"]: jwt.PyJWK(k).key for k in jwks["keys"]}

        def tokens_verify() -> list[httpx.Response]:
            answers = fresh_gets(server, 40)
            for answer in answers:
                assert answer.status_code == 200
                token = answer.json()["token"]
                key = keys[jwt.get_unverified_header(token)["kid"]]
                claims = jwt.decode(token, key, algorithms=["ES256"], audience="registry")
                assert claims["iss"] == server.issuer
            return answers

        on_every_worker(server, tokens_verify)
        # Every worker serves the same key set, too.
        for _ in range(10):
            assert httpx.get(f"{server.url}/.well-known/jwks.json").json() == jwks

        server.add_user("wendy", "wendy-pw-1")

        def user_logs_in() -> list[httpx.Response]:
            scope = "repository:wendy/app:pull"
            answers = fresh_gets(server, 20, ("wendy", "wendy-pw-1"), scope)
            for answer in answers:
                assert answer.status_code == 200, answer.text
                claims = jwt.decode(answer.json()["token"], options={"verify_signature": False})
                assert claims["sub"] == "wendy"
                assert claims["access"][0]["actions"] == ["pull"]
            return answers

        on_every_worker(server, user_logs_in)

        secret = server.cli(
            "ci-token", "create", "ci-w", "--scope", "repository:w/*:pull", "--ttl", "1h"
        ).strip()

        def ci_logs_in() -> list[httpx.Response]:
            answers = fresh_gets(server, 10, ("ci-w", secret), "repository:w/app:pull")
            assert {a.status_code for a in answers} == {200}
            return answers

        on_every_worker(server, ci_logs_in)
        server.cli("ci-token", "revoke", "ci-w")

        def ci_refused() -> list[httpx.Response]:
            answers = fresh_gets(server, 10, ("ci-w", secret), "repository:w/app:pull")
            assert {a.status_code for a in answers} == {401}
            return answers

        on_every_worker(server, ci_refused)
        log = server.log_text()
        assert "Traceback" not in log and '"level": "error"' not in log


@pytest.mark.peers
def test_a_stop_writes_every_workers_rows_and_ends_them_all(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tokenserver.db'}"
    server = TokenServer(tmp_path, database_url=url, extra=EXTRA).start()
    proc, workers = server.proc, children(server.pid)
    assert len(workers) == WORKERS
    try:
        answered = check_sigterm_writes_every_row(server, url)
    finally:
        server.stop()
    assert answered >= 300
    assert not any(pid_alive(pid) for pid in workers)
    # The supervisor said nothing went wrong, and each worker logged its own shutdown.
    assert proc is not None and proc.returncode == 0
    assert server.log_text().count("Application shutdown complete") == WORKERS


@pytest.mark.peers
def test_workers_go_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    server = TokenServer(tmp_path, extra=EXTRA).start()
    workers = children(server.pid)
    try:
        assert fresh_gets(server, 4)[0].status_code == 200
        server.kill()
        deadline = time.monotonic() + 30
        while any(pid_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(pid_alive(pid) for pid in workers)
    finally:
        for pid in workers:
            kill_pid(pid, signal.SIGKILL)
        server.stop()


@pytest.mark.peers
@pytest.mark.parametrize("workers", [1, WORKERS])
def test_the_last_log_lines_are_written_before_the_process_ends(
    tmp_path: Path, workers: int
) -> None:
    """Lines go through a queue to a writer thread: a stop must not leave any behind."""
    server = TokenServer(tmp_path, extra={"server": {"workers": workers}}).start()
    assert fresh_gets(server, 4)[0].status_code == 200
    server.stop()
    lines = server.log_text().splitlines()
    entries = [json.loads(line) for line in lines]  # every line whole
    assert sum(e["msg"] == "request" for e in entries) >= 4
    # The lifespan's last words, logged after the audit trail was closed.
    assert [e["msg"] for e in entries].count("Application shutdown complete.") == workers

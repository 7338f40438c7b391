"""Token requests under load, each one findable afterwards in the audit trail.

Every request carries its own User-Agent (`<run>/<n>`), which the audit row
records, and the load remembers when each answer arrived (wall clock), so a
test can stop or kill the server mid-load and ask which answered requests
left a row and which did not.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from dataclasses import dataclass

import httpx
from sqlalchemy import create_engine, text

from tests.support.tokenserver import TokenServer

__all__ = [
    "Answered",
    "TokenLoad",
    "audited_agents",
    "check_sigkill_loses_at_most_a_second",
    "check_sigterm_writes_every_row",
]


@dataclass(frozen=True)
class Answered:
    agent: str
    at: float  # time.time() when the 200 arrived


class TokenLoad:
    """Anonymous GET /token from `clients` threads until `stop()`, at most `limit` requests."""

    def __init__(self, url: str, *, clients: int = 4, limit: int = 20_000) -> None:
        self.url = url
        self.run = f"load-{secrets.token_hex(4)}"
        self._limit = limit
        self._numbers = itertools.count()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.answered: list[Answered] = []
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def __enter__(self) -> TokenLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def wait_for(self, answers: int, timeout: float) -> None:
        """Until at least `answers` requests were answered (or the timeout passed)."""
        deadline = time.monotonic() + timeout
        while len(self.answered) < answers and time.monotonic() < deadline:
            time.sleep(0.05)

    def _client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stopping.is_set():
                n = next(self._numbers)
                if n >= self._limit:
                    return
                agent = f"{self.run}/{n}"
                try:
                    answer = client.get(
                        "/token", params={"service": "registry"}, headers={"User-Agent": agent}
                    )
                except httpx.HTTPError:
                    # The server is going away; a new connection may still be refused.
                    time.sleep(0.01)
                    continue
                if answer.status_code == 200:
                    with self._lock:
                        self.answered.append(Answered(agent, time.time()))


def audited_agents(database_url: str, run: str) -> set[str]:
    """User-Agents of this run's token rows in the audit trail."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT user_agent FROM audit_events WHERE user_agent LIKE :p"),
                {"p": f"{run}/%"},
            ).all()
    finally:
        engine.dispose()
    return {row.user_agent for row in rows}


def check_sigterm_writes_every_row(server: TokenServer, database_url: str) -> int:
    """SIGTERM in the middle of a load: every request answered 200 has its row. Returns how many."""
    with TokenLoad(server.url) as load:
        load.wait_for(300, timeout=30)
        server.stop()  # SIGTERM while the clients keep asking; returns once it has exited
    answered = {a.agent for a in load.answered}
    rows = audited_agents(database_url, load.run)
    assert len(answered) >= 300
    assert answered - rows == set()
    assert "Traceback" not in server.log_text()
    return len(answered)


def check_sigkill_loses_at_most_a_second(server: TokenServer, database_url: str) -> float:
    """SIGKILL in the middle of a load: only answers of the last second may lack their row.

    Returns how long before the kill the oldest answer without a row arrived (0 if none).
    """
    with TokenLoad(server.url) as load:
        load.wait_for(300, timeout=30)
        time.sleep(1.0)  # a steady load, not its first burst
        killed_at = time.time()
        server.kill()
    rows = audited_agents(database_url, load.run)
    missing = [a for a in load.answered if a.agent not in rows]
    lag = max((killed_at - a.at for a in missing), default=0.0)
    print(
        f"SIGKILL after {len(load.answered)} answers: {len(missing)} without a row,"
        f" the oldest answered {lag:.3f} s before the kill"
    )
    assert len(load.answered) >= 300
    assert lag <= 1.0, f"{len(missing)} rows missing, the oldest answered {lag:.3f} s before"
    return lag

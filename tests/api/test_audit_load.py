"""Under load every token request still leaves exactly its one audit row, and `audit tail` finds it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.token_load import TokenLoad, audited_agents
from tests.support.tokenserver import TokenServer

REQUESTS = 5000


@pytest.mark.peers
def test_five_thousand_requests_leave_five_thousand_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tokenserver.db'}"
    with TokenServer(tmp_path, database_url=url) as server:
        with TokenLoad(server.url, clients=8, limit=REQUESTS) as load:
            load.wait_for(REQUESTS, timeout=120)
        answered = {a.agent for a in load.answered}
        assert len(answered) == REQUESTS

        # The rows come in batches off the request path: wait for the last batch (bounded).
        deadline = time.monotonic() + 30
        rows = audited_agents(url, load.run)
        while rows != answered and time.monotonic() < deadline:
            time.sleep(0.1)
            rows = audited_agents(url, load.run)
        assert rows == answered

        # One row per request, not one per batch or more: count them in the database.
        tail = server.cli(
            "audit", "tail", "--since", "1h", "--json", "--action", "token", "--limit", "10000"
        )
        entries = [json.loads(line) for line in tail.splitlines() if line.startswith("{")]
        ours = [e for e in entries if e["user_agent"].startswith(load.run + "/")]
        assert len(ours) == REQUESTS
        assert {e["outcome"] for e in ours} == {"granted"}
        assert "Traceback" not in server.log_text()

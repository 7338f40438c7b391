"""An issuer's key set fetched under one deadline, with bounded waits for the logins that need it.

Against a real socket server on 127.0.0.1 that sends its JWKS a byte a
second over HTTPS: every read is quick, only the whole is slow.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from pathlib import Path

import pytest

from authcore.remote_keys import FETCH_DEADLINE
from tests.support.trickle import TricklingServer
from tokenserver.federation.verify import MAX_WAITING, WAIT, IssuerKeys, KeysUnavailable


def _fetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "oidc-keys"]


def _outcome(source: IssuerKeys, kid: str) -> tuple[str, float]:
    started = time.monotonic()
    try:
        source.refetch()  # as a login does for a kid it does not know
    except KeysUnavailable as exc:
        return str(exc), time.monotonic() - started
    return "answered", time.monotonic() - started


def test_a_trickling_jwks_is_unavailable_in_time_from_one_fetch(tmp_path: Path) -> None:
    with TricklingServer(tmp_path / "trickle", interval=1.0, limit=40) as jwks:
        issuer = f"https://127.0.0.1:{jwks.port}"
        source = IssuerKeys(issuer, jwks_uri=jwks.url, ca_file=jwks.ca_file)
        callers = MAX_WAITING + 14
        with concurrent.futures.ThreadPoolExecutor(callers) as pool:
            outcomes = list(pool.map(lambda i: _outcome(source, f"kid-{i}"), range(callers)))
        assert all(what != "answered" for what, _ in outcomes), outcomes
        # Nobody waited past the wait (a few times over, for a loaded machine).
        assert max(took for _, took in outcomes) < 3 * WAIT, outcomes
        # Those beyond the cap did not wait at all: no thread is parked for them.
        refused_at_once = [what for what, _ in outcomes if what.startswith("too many")]
        assert len(refused_at_once) >= callers - MAX_WAITING, outcomes
        assert jwks.connections == 1

        # The fetch itself ends by its deadline, not when the trickle would.
        ends = time.monotonic() + 3 * FETCH_DEADLINE
        while (_fetch_threads() or jwks.trickling) and time.monotonic() < ends:
            time.sleep(0.05)
        assert not _fetch_threads() and jwks.trickling == 0

        # Until the next fetch is due, the failure stands: at once, and no new fetch.
        with pytest.raises(KeysUnavailable, match="within"):
            source.refetch()
        assert jwks.connections == 1

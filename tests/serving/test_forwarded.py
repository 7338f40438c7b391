"""X-Forwarded-For is believed only from a proxy named in `trusted_proxies`."""

from __future__ import annotations

import secrets
import time

import httpx

from tests.serving.conftest import Served

FORWARDED = {"X-Forwarded-For": "127.8.8.8"}


def _logged_client(served: Served) -> str:
    path = f"/forwarded-{secrets.token_hex(4)}"  # a 404, told apart from every other line
    assert httpx.get(served.url + path, headers=FORWARDED).status_code == 404
    time.sleep(0.1)
    (access,) = [
        e for e in served.log_entries() if e["logger"] == served.access_logger and e["path"] == path
    ]
    return str(access["client"])


def test_ignored_by_default(standard: Served) -> None:
    assert _logged_client(standard) == "127.0.0.1"


def test_honoured_from_a_named_proxy(quick: Served) -> None:
    assert quick.limits["trusted_proxies"] == ["127.0.0.1"]
    assert _logged_client(quick) == "127.8.8.8"

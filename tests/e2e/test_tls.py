"""The token server serves HTTPS itself when given a certificate and key."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.certs import write_self_signed
from tests.support.tokenserver import TokenServer

pytestmark = pytest.mark.e2e


def test_token_over_https(tmp_path: Path) -> None:
    with TokenServer(tmp_path / "ts", tls=write_self_signed(tmp_path)) as tokens:
        tokens.add_user("tia", "tia-pw-1")
        assert tokens.url.startswith("https://")
        answer = httpx.get(
            f"{tokens.url}/token",
            params={"service": "registry", "scope": "repository:tia/app:pull"},
            auth=("tia", "tia-pw-1"),
            verify=tokens.verify,
        )
        assert answer.status_code == 200
        assert answer.json()["access_token"]
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{tokens.url}/healthz")  # an untrusted certificate is refused

"""registry_proxy trusting only the token server's JWKS URL, across a key rotation."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support.registry_proxy import RegistryProxy
from tests.support.tokenserver import TokenServer

pytestmark = pytest.mark.e2e


def tags_status(tokens: TokenServer, registry: RegistryProxy) -> int:
    answer = httpx.get(
        f"{tokens.url}/token",
        params={"service": "registry", "scope": "repository:jo/app:pull"},
        auth=("jo", "jo-pw-1"),
    )
    token = answer.json()["token"]
    return httpx.get(
        f"{registry.url}/v2/jo/app/tags/list", headers={"Authorization": f"Bearer {token}"}
    ).status_code


def test_new_signing_key_is_fetched_from_the_jwks_url(tmp_path: Path) -> None:
    tokens = TokenServer(tmp_path / "ts")
    tokens.start()
    try:
        tokens.add_user("jo", "jo-pw-1")
        auth = tokens.registry_auth()
        del auth["rootcertbundle"]
        auth["jwks"] = f"{tokens.url}/.well-known/jwks.json"
        quick = {"auth": {"token": {**auth, "jwks_min_refresh": 1}}}
        slow = {"auth": {"token": {**auth, "jwks_min_refresh": 3600}}}
        with (
            RegistryProxy(tmp_path / "rp", auth, extra=quick) as registry,
            RegistryProxy(tmp_path / "held", auth, extra=slow) as held_back,
        ):
            # Authorized (the repository simply does not exist yet).
            assert tags_status(tokens, registry) == 404
            assert tags_status(tokens, held_back) == 404

            # Rotate: a new key signs from the next start; the registry has never seen it.
            tokens.stop()
            tokens.cli("keys", "generate")
            tokens.start()
            time.sleep(1.1)  # past the minimum refetch interval
            assert tags_status(tokens, registry) == 404
            assert "JWKS fetch failed" not in registry.log_text()
            # Within its interval a registry does not refetch: the new kid is unknown.
            assert tags_status(tokens, held_back) == 401
    finally:
        tokens.stop()

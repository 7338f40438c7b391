"""`http.workers`: several registry workers over one storage root serve as one registry."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
from pathlib import Path

import httpx
import pytest

from registry_proxy.config import ConfigError, load_config
from tests.support.registry_proxy import RegistryProxy
from tests.support.tokenserver import TokenServer

WORKERS = 2
ROUNDS = 20


@pytest.mark.peers
def test_workers_serve_one_storage_and_trust_one_key_set(tmp_path: Path) -> None:
    tokens = TokenServer(tmp_path / "tokens", extra={"users": {"bcrypt_cost": 4}})
    with tokens:
        tokens.add_user("pia", "pia-pw-1")
        registry = RegistryProxy(
            tmp_path / "registry", tokens.registry_auth(), extra={"http": {"workers": WORKERS}}
        )
        with registry:
            answer = httpx.get(
                tokens.realm,
                params={"service": "registry", "scope": "repository:pia/app:pull,push"},
                auth=("pia", "pia-pw-1"),
            )
            auth = {"Authorization": f"Bearer {answer.json()['token']}"}
            blob = b"a blob every worker must see"
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            pushed = httpx.post(
                f"{registry.url}/v2/pia/app/blobs/uploads/",
                params={"digest": digest},
                content=blob,
                headers={**auth, "Content-Type": "application/octet-stream"},
            )
            assert pushed.status_code == 201, pushed.text

            def head(_: int) -> int:
                headers = {**auth, "Connection": "close"}
                url = f"{registry.url}/v2/pia/app/blobs/{digest}"
                return httpx.head(url, headers=headers).status_code

            offset = len(registry.log_text())
            for _ in range(ROUNDS):
                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    assert set(pool.map(head, range(24))) == {200}
                lines = registry.log_text()[offset:].splitlines()
                entries = [json.loads(line) for line in lines if line.startswith("{")]
                prefixes = {
                    e["request_id"][:8]
                    for e in entries
                    if e.get("msg") == "request" and e.get("method") == "HEAD"
                }
                if len(prefixes) == WORKERS:
                    break
            assert len(prefixes) == WORKERS, "not every worker answered"
            assert "Traceback" not in registry.log_text()


def test_workers_over_memory_storage_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "registry.yaml"
    config.write_text(
        "http: {workers: 2}\nstorage: {memory: {}}\n"
        "auth: {token: {realm: http://127.0.0.1:1/token, service: registry, issuer: i,"
        " jwks: jwks.json}}\n"
    )
    with pytest.raises(ConfigError, match="workers"):
        load_config(config)

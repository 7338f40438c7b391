"""`storage.redirect`: off by default; on, only a store that can sign a URL redirects."""

from __future__ import annotations

import hashlib
from pathlib import Path

from starlette.testclient import TestClient

from registry_proxy.app import create_app
from registry_proxy.config import Config
from tests.registry.conftest import ISSUER, SERVICE, Mint


def _registry(root: Path, keys_dir: Path, redirect: dict[str, bool] | None) -> TestClient:
    storage: dict[str, object] = {"filesystem": {"rootdirectory": str(root)}}
    if redirect is not None:
        storage["redirect"] = redirect
    config = Config.model_validate(
        {
            "storage": storage,
            "auth": {
                "token": {
                    "realm": "http://127.0.0.1:1/token",
                    "service": SERVICE,
                    "issuer": ISSUER,
                    "rootcertbundle": str(keys_dir / "bundle.pem"),
                }
            },
        }
    )
    return TestClient(create_app(config))


def test_the_default_and_a_store_without_urls_serve_the_bytes(
    tmp_path: Path, keys_dir: Path, mint: Mint
) -> None:
    assert Config.model_validate(
        {"auth": {"token": {"realm": "x", "service": "s", "issuer": "i", "jwks": "k"}}}
    ).storage.redirect.disable
    data = b"served here"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    auth = mint("repository:team/app:pull,push")
    for redirect in (None, {"disable": False}):
        with _registry(tmp_path / "root", keys_dir, redirect) as client:
            client.post(
                "/v2/team/app/blobs/uploads/", params={"digest": digest}, content=data, headers=auth
            )
            got = client.get(f"/v2/team/app/blobs/{digest}", headers=auth, follow_redirects=False)
            assert got.status_code == 200 and got.content == data

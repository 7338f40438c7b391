"""Tokens signed with a key of our own, for registry tests that need no token server."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import httpx

from authcore.scope import parse_scopes
from tokenserver.issuer import Issuer
from tokenserver.keys import generate_key, load_keys

__all__ = ["Minter", "log_problems", "push_image"]

ISSUER, SERVICE = "test-issuer", "registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Minter:
    """A signing key in `keys_dir`, the registry's `auth.token` section that trusts it,
    and Authorization headers for any scopes."""

    def __init__(self, keys_dir: Path) -> None:
        generate_key(keys_dir, "ES256")
        self.keys_dir = keys_dir
        self._issuer = Issuer(load_keys(keys_dir), ISSUER, 600)

    @property
    def token_auth(self) -> dict[str, str]:
        return {
            "realm": "http://127.0.0.1:1/token",
            "service": SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": str(self.keys_dir / "bundle.pem"),
        }

    def headers(self, *scopes: str, subject: str = "tester") -> dict[str, str]:
        issued = self._issuer.issue(subject, SERVICE, parse_scopes(scopes), dt.datetime.now(dt.UTC))
        return {"Authorization": f"Bearer {issued.token}"}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_image(
    client: httpx.Client, repo: str, tag: str, headers: dict[str, str], seed: bytes = b""
) -> tuple[bytes, str]:
    """A config and a layer as blobs, then an OCI manifest under `tag`: (manifest, digest)."""
    config = b'{"architecture":"amd64","os":"linux","seed":"' + seed.hex().encode() + b'"}'
    layer = b"layer bytes " + seed
    descriptors = []
    for data, media_type in (
        (config, "application/vnd.oci.image.config.v1+json"),
        (layer, "application/vnd.oci.image.layer.v1.tar"),
    ):
        digest = sha256(data)
        r = client.post(f"/v2/{repo}/blobs/uploads/?digest={digest}", content=data, headers=headers)
        assert r.status_code == 201, r.text
        descriptors.append({"mediaType": media_type, "digest": digest, "size": len(data)})
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptors[0],
            "layers": descriptors[1:],
        }
    ).encode()
    r = client.put(
        f"/v2/{repo}/manifests/{tag}",
        content=manifest,
        headers=headers | {"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 201, r.text
    return manifest, sha256(manifest)


def log_problems(log: str) -> list[str]:
    """Lines of a registry_proxy log that show a crash or an error."""
    return [
        line
        for line in log.splitlines()
        if "Traceback" in line or '"level": "error"' in line or '"level": "critical"' in line
    ]

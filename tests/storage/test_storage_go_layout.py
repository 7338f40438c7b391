"""Byte-level compatibility with the Go registry's (v2.8) filesystem layout, both ways."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from registry_proxy.reference import Digest
from registry_proxy.storage import Storage
from registry_proxy.storage.filesystem import FilesystemDriver
from tests.storage.helpers import OCI_MANIFEST, collect, image_manifest, push_blob, stream

pytestmark = pytest.mark.anyio

V2 = "docker/registry/v2"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def files_under(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def blob_file(digest: Digest) -> str:
    return f"{V2}/blobs/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}/data"


async def test_what_we_write_is_the_go_layout(root: Path) -> None:
    storage = Storage(FilesystemDriver(root))
    config, layer = b'{"os":"linux"}', b"layer bytes"
    config_digest = await push_blob(storage, "library/app", config)
    layer_digest = await push_blob(storage, "library/app", layer)
    body = image_manifest(config, [layer])
    manifest = Digest.of(body)
    await storage.manifests.put("library/app", "latest", body, OCI_MANIFEST)
    pending = await storage.uploads.start("library/app")
    await storage.uploads.append("library/app", pending.id, stream(b"partial"))

    repo = f"{V2}/repositories/library/app"
    started_at = files_under(root)[f"{repo}/_uploads/{pending.id}/startedat"]
    assert files_under(root) == {
        blob_file(config_digest): config,
        blob_file(layer_digest): layer,
        blob_file(manifest): body,
        f"{repo}/_layers/sha256/{config_digest.hex}/link": str(config_digest).encode(),
        f"{repo}/_layers/sha256/{layer_digest.hex}/link": str(layer_digest).encode(),
        f"{repo}/_manifests/revisions/sha256/{manifest.hex}/link": str(manifest).encode(),
        f"{repo}/_manifests/tags/latest/current/link": str(manifest).encode(),
        f"{repo}/_manifests/tags/latest/index/sha256/{manifest.hex}/link": str(manifest).encode(),
        f"{repo}/_uploads/{pending.id}/data": b"partial",
        f"{repo}/_uploads/{pending.id}/startedat": started_at,
    }
    assert str(config_digest).encode() == b"sha256:" + config_digest.hex.encode()  # no newline


async def test_referrers_index_hides_from_the_go_walk(root: Path) -> None:
    storage = Storage(FilesystemDriver(root))
    await push_blob(storage, "r", b"{}")
    subject = Digest.of(b"subject")
    doc = json.loads(image_manifest(b"{}", []))
    doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": str(subject), "size": 7}
    body = json.dumps(doc).encode()
    referrer = Digest.of(body)
    await storage.manifests.put("r", str(referrer), body, None)
    link = root / f"{V2}/repositories/r/_referrers/sha256/{subject.hex}/sha256/{referrer.hex}/link"
    assert link.read_bytes() == str(referrer).encode()


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def test_we_serve_a_go_data_directory(root: Path) -> None:
    """A data directory as the Go registry leaves it, including its upload hash states."""
    config = b'{"architecture":"amd64","os":"linux"}'
    layer = os.urandom(3000)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": str(Digest.of(config)),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": str(Digest.of(layer)),
                }
            ],
        },
        indent=3,
    ).encode()
    manifest = Digest.of(body)
    repo = root / V2 / "repositories/go/pushed"
    for data in (config, layer, body):
        write(root / blob_file(Digest.of(data)), data)
    for data in (config, layer):
        d = Digest.of(data)
        write(repo / f"_layers/sha256/{d.hex}/link", str(d).encode())
    write(repo / f"_manifests/revisions/sha256/{manifest.hex}/link", str(manifest).encode())
    write(repo / "_manifests/tags/1.0/current/link", str(manifest).encode())
    write(repo / f"_manifests/tags/1.0/index/sha256/{manifest.hex}/link", str(manifest).encode())
    upload = repo / "_uploads/6a1b2c3d-0000-4000-8000-000000000001"
    write(upload / "data", b"half")
    write(upload / "startedat", b"2024-03-01T10:20:30Z")
    write(upload / "hashstates/sha256/4", b"go binary hash state")

    storage = Storage(FilesystemDriver(root))
    assert await storage.catalog.list(None, None) == (["go/pushed"], False)
    assert await storage.tags.list("go/pushed") == ["1.0"]
    stored = await storage.manifests.get("go/pushed", "1.0")
    assert (stored.body, stored.media_type, stored.digest) == (body, DOCKER_MANIFEST, manifest)
    assert await storage.blobs.linked("go/pushed", Digest.of(layer)) == len(layer)
    assert await collect(storage.blobs.open(Digest.of(layer))) == layer
    # The Go registry's unfinished upload can be finished here.
    status = await storage.uploads.status("go/pushed", upload.name)
    assert status.offset == 4
    assert status.started_at.isoformat() == "2024-03-01T10:20:30+00:00"
    await storage.uploads.append("go/pushed", upload.name, stream(b" done"), 4)
    assert await storage.uploads.commit("go/pushed", upload.name, Digest.of(b"half done")) == 9
    assert not upload.exists()

"""The real Go registry (docker-registry 2.8) serves what we wrote, and we serve what it wrote."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from registry_proxy.reference import Digest
from registry_proxy.storage import Storage
from registry_proxy.storage.filesystem import FilesystemDriver
from tests.storage.helpers import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    collect,
    image_manifest,
    index_manifest,
    push_blob,
    stream,
)
from tests.support.peers import GO_REGISTRY, GoRegistry, env_without, run

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST,
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
MiB = 1024 * 1024


def client(registry: GoRegistry) -> httpx.Client:
    return httpx.Client(base_url=registry.url, timeout=30, trust_env=False)


def with_digest(location: str, data: bytes) -> httpx.URL:
    # The Go registry's Location carries its own query (`_state`); keep it.
    return httpx.URL(location).copy_add_param("digest", str(Digest.of(data)))


async def test_go_registry_serves_our_data(tmp_path: Path) -> None:
    registry = GoRegistry(tmp_path / "go")
    storage = Storage(FilesystemDriver(registry.storage_dir))
    repo = "ours/app"
    config, small, big = (
        b'{"architecture":"amd64","os":"linux"}',
        b"small layer",
        os.urandom(3 * MiB),
    )
    for data in (config, small):
        await push_blob(storage, repo, data)
    session = await storage.uploads.start(repo)
    for offset in range(0, len(big), MiB):
        await storage.uploads.append(repo, session.id, stream(big[offset : offset + MiB]), offset)
    await storage.uploads.commit(repo, session.id, Digest.of(big))

    oci = image_manifest(config, [small, big])
    docker = image_manifest(config, [small], media_type=DOCKER_MANIFEST)
    index = index_manifest([oci])
    referrer = json.loads(image_manifest(config, []))
    referrer["subject"] = {
        "mediaType": OCI_MANIFEST,
        "digest": str(Digest.of(oci)),
        "size": len(oci),
    }
    referrer_body = json.dumps(referrer).encode()
    for tag, body, media_type in (
        ("v1", oci, OCI_MANIFEST),
        ("docker", docker, DOCKER_MANIFEST),
        ("multi", index, OCI_INDEX),
        ("gone", docker, DOCKER_MANIFEST),
        (None, referrer_body, OCI_MANIFEST),
    ):
        await storage.manifests.put(repo, tag or str(Digest.of(body)), body, media_type)
    await storage.manifests.delete_tag(repo, "gone")

    with registry, client(registry) as http:
        assert http.get("/v2/_catalog").json() == {"repositories": [repo]}
        # The Go registry lists tags in directory order.
        assert sorted(http.get(f"/v2/{repo}/tags/list").json()["tags"]) == ["docker", "multi", "v1"]
        for reference, body, media_type in (
            ("v1", oci, OCI_MANIFEST),
            ("docker", docker, DOCKER_MANIFEST),
            ("multi", index, OCI_INDEX),
            (str(Digest.of(referrer_body)), referrer_body, OCI_MANIFEST),
        ):
            response = http.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": ACCEPT})
            assert response.status_code == 200, response.text
            assert response.content == body
            assert response.headers["Docker-Content-Digest"] == str(Digest.of(body))
            assert response.headers["Content-Type"] == media_type
        for data in (config, small, big):
            response = http.get(f"/v2/{repo}/blobs/{Digest.of(data)}")
            assert response.status_code == 200
            assert response.content == data
            assert response.headers["Docker-Content-Digest"] == str(Digest.of(data))
        assert http.get(f"/v2/{repo}/manifests/gone", headers={"Accept": ACCEPT}).status_code == 404

    # Its garbage collector reads every manifest we stored and finds nothing to delete.
    result = run(
        [GO_REGISTRY, "garbage-collect", "--dry-run", str(registry.config_path)],
        env=env_without(prefixes=("REGISTRY_",)),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 blobs and 0 manifests eligible for deletion" in result.stdout + result.stderr


async def test_we_serve_go_registry_data(tmp_path: Path) -> None:
    registry = GoRegistry(tmp_path / "go")
    repo = "theirs/app"
    config, layer = b'{"architecture":"arm64","os":"linux"}', os.urandom(2 * MiB + 5)
    manifest = image_manifest(config, [layer])
    index = index_manifest([manifest])
    with registry, client(registry) as http:
        # Monolithic upload of the config.
        started = http.post(f"/v2/{repo}/blobs/uploads/")
        assert started.status_code == 202
        done = http.put(with_digest(started.headers["Location"], config), content=config)
        assert done.status_code == 201, done.text
        # Chunked upload of the layer.
        started = http.post(f"/v2/{repo}/blobs/uploads/")
        location = started.headers["Location"]
        for offset in range(0, len(layer), MiB):
            chunk = layer[offset : offset + MiB]
            patched = http.patch(
                location,
                content=chunk,
                headers={
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                    "Content-Type": "application/octet-stream",
                },
            )
            assert patched.status_code == 202, patched.text
            location = patched.headers["Location"]
        done = http.put(with_digest(location, layer))
        assert done.status_code == 201, done.text
        for tag, body, media_type in (("v1", manifest, OCI_MANIFEST), ("multi", index, OCI_INDEX)):
            put = http.put(
                f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": media_type}
            )
            assert put.status_code == 201, put.text
        # An upload left unfinished.
        started = http.post(f"/v2/{repo}/blobs/uploads/")
        unfinished = started.headers["Docker-Upload-UUID"]
        patched = http.patch(
            started.headers["Location"],
            content=b"half",
            headers={"Content-Type": "application/octet-stream"},
        )
        assert patched.status_code == 202, patched.text

        storage = Storage(FilesystemDriver(registry.storage_dir))
        assert await storage.catalog.list(None, None) == ([repo], False)
        assert await storage.tags.list(repo) == ["multi", "v1"]
        for tag, body, media_type in (("v1", manifest, OCI_MANIFEST), ("multi", index, OCI_INDEX)):
            stored = await storage.manifests.get(repo, tag)
            assert (stored.body, stored.media_type, stored.digest) == (
                body,
                media_type,
                Digest.of(body),
            )
        for data in (config, layer):
            assert await storage.blobs.linked(repo, Digest.of(data)) == len(data)
            assert await collect(storage.blobs.open(Digest.of(data))) == data
        assert (await storage.uploads.status(repo, unfinished)).offset == 4
        await storage.uploads.append(repo, unfinished, stream(b" and the rest"), 4)
        await storage.uploads.commit(repo, unfinished, Digest.of(b"half and the rest"))
        assert await storage.blobs.linked(repo, Digest.of(b"half and the rest")) == 17

        # A delete through our layer is seen by the Go registry.
        await storage.manifests.delete(repo, Digest.of(index))
        gone = http.get(f"/v2/{repo}/manifests/multi", headers={"Accept": ACCEPT})
        assert gone.status_code == 404
        kept = http.get(f"/v2/{repo}/manifests/{Digest.of(manifest)}", headers={"Accept": ACCEPT})
        assert kept.status_code == 200
        assert kept.content == manifest
        new_blob = http.get(f"/v2/{repo}/blobs/{Digest.of(b'half and the rest')}")
        assert new_blob.content == b"half and the rest"

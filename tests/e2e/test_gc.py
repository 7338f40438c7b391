"""`registry-proxy gc` on data pushed over HTTP: dry run, sweep, and --delete-untagged.

Two tagged images share a layer; a third image is pushed by digest only
(untagged). Deleting one tagged image by digest leaves its own blobs
unreferenced: gc removes exactly those, keeps the shared layer, and the
survivors stay pullable. The Go registry's own `garbage-collect --dry-run`
over the same directory agrees with the counts.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.images import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, sha256_digest
from tests.support.peers import GO_REGISTRY, env_without, require_binary, run
from tests.support.registry_proxy import RegistryProxy
from tests.support.tokenserver import TokenServer

pytestmark = pytest.mark.e2e

ADMIN, ADMIN_PASSWORD = "root", "root-pw-gc"
REPO = "gc/app"
SUMMARY = re.compile(
    r"^(\d+) blobs marked, (would delete|deleted) (\d+) blobs \((\d+) bytes\) "
    r"and (\d+) untagged manifests$",
    re.M,
)
GO_SUMMARY = re.compile(
    r"(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion"
)


@dataclass(frozen=True)
class Image:
    manifest: bytes
    digest: str
    config: bytes
    layers: tuple[bytes, ...]

    @property
    def blobs(self) -> dict[str, bytes]:
        """Every blob the image consists of, its manifest included, by digest."""
        parts = (self.manifest, self.config, *self.layers)
        return {sha256_digest(part): part for part in parts}


@dataclass(frozen=True)
class Report:
    marked: int
    verb: str
    swept: int
    freed: int
    manifests: int


class Client:
    def __init__(self, proxy: RegistryProxy, token: str) -> None:
        self.http = httpx.Client(
            base_url=proxy.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
            trust_env=False,
        )

    def push_blob(self, data: bytes) -> None:
        digest = sha256_digest(data)
        if self.http.head(f"/v2/{REPO}/blobs/{digest}").status_code == 200:
            return
        started = self.http.post(f"/v2/{REPO}/blobs/uploads/")
        assert started.status_code == 202, started.text
        done = self.http.put(started.headers["location"], params={"digest": digest}, content=data)
        assert done.status_code == 201, done.text

    def push_image(self, seed: str, layers: tuple[bytes, ...], tag: str | None) -> Image:
        config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
        for blob in (config, *layers):
            self.push_blob(blob)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, config),
                "layers": [descriptor(OCI_LAYER_GZIP, layer) for layer in layers],
            }
        ).encode()
        digest = sha256_digest(manifest)
        put = self.http.put(
            f"/v2/{REPO}/manifests/{tag or digest}",
            content=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert put.status_code == 201, put.text
        assert put.headers["docker-content-digest"] == digest
        return Image(manifest, digest, config, layers)

    def assert_pullable(self, image: Image, reference: str) -> None:
        got = self.http.get(f"/v2/{REPO}/manifests/{reference}", headers={"Accept": OCI_MANIFEST})
        assert got.status_code == 200, got.text
        assert got.content == image.manifest
        assert got.headers["docker-content-digest"] == image.digest
        for digest, data in image.blobs.items():
            if digest == image.digest:
                continue
            blob = self.http.get(f"/v2/{REPO}/blobs/{digest}")
            assert blob.status_code == 200, f"{digest}: {blob.text}"
            assert blob.content == data
            assert blob.headers["docker-content-digest"] == digest

    def assert_blob_gone(self, digest: str) -> None:
        blob = self.http.get(f"/v2/{REPO}/blobs/{digest}")
        assert blob.status_code == 404, blob.text
        assert blob.json()["errors"][0]["code"] == "BLOB_UNKNOWN"


def descriptor(media_type: str, data: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}


def blob_path(root: Path, digest: str) -> Path:
    hex_digest = digest.removeprefix("sha256:")
    return root / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"


def stored_blobs(root: Path) -> dict[str, bytes]:
    """Every blob in the data directory, by digest, with its bytes."""
    base = root / "docker/registry/v2/blobs/sha256"
    return {f"sha256:{p.parent.name}": p.read_bytes() for p in base.glob("*/*/data")}


def gc(proxy: RegistryProxy, *args: str) -> Report:
    result = proxy.gc(*args)
    assert result.returncode == 0, result.stderr
    match = SUMMARY.search(result.stdout)
    assert match is not None, result.stdout
    marked, verb, swept, freed, manifests = match.groups()
    return Report(int(marked), verb, int(swept), int(freed), int(manifests))


def go_gc_dry_run(root: Path, workdir: Path, *args: str) -> tuple[int, int, int]:
    """(marked, blobs, manifests) that the Go registry's garbage-collect would delete."""
    binary = require_binary(GO_REGISTRY)
    config = workdir / "go-gc.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "storage": {"filesystem": {"rootdirectory": str(root)}},
                "http": {"addr": "127.0.0.1:0"},
            }
        )
    )
    result = run(
        [binary, "garbage-collect", "--dry-run", *args, str(config)],
        env=env_without(prefixes=("REGISTRY_",)),
    )
    assert result.returncode == 0, result.stderr
    match = GO_SUMMARY.search(result.stdout + result.stderr)
    assert match is not None, result.stdout + result.stderr
    marked, blobs, manifests = (int(x) for x in match.groups())
    return marked, blobs, manifests


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    with TokenServer(tmp_path_factory.mktemp("gc-ts")) as server:
        server.add_user(ADMIN, ADMIN_PASSWORD, "admin")
        yield server


def test_gc_dry_run_sweep_and_delete_untagged(tokens: TokenServer, tmp_path: Path) -> None:
    answer = httpx.get(
        tokens.realm,
        params={"service": tokens.service, "scope": f"repository:{REPO}:pull,push,delete"},
        auth=(ADMIN, ADMIN_PASSWORD),
    )
    answer.raise_for_status()
    with RegistryProxy(tmp_path / "proxy", tokens.registry_auth()) as proxy:
        root = proxy.root
        client = Client(proxy, answer.json()["token"])
        shared = os.urandom(64 * 1024)
        one = client.push_image("one", (shared, os.urandom(32 * 1024)), "one")
        two = client.push_image("two", (shared, os.urandom(48 * 1024)), "two")
        untagged = client.push_image("three", (shared, os.urandom(16 * 1024)), None)
        assert set(stored_blobs(root)) == {*one.blobs, *two.blobs, *untagged.blobs}

        deleted = client.http.delete(f"/v2/{REPO}/manifests/{one.digest}")
        assert deleted.status_code == 202, deleted.text
        gone = client.http.get(f"/v2/{REPO}/manifests/one", headers={"Accept": OCI_MANIFEST})
        assert gone.status_code == 404

        # Only image one's own blobs (its manifest, config, unshared layer) are unreferenced.
        only_one = set(one.blobs) - set(two.blobs) - set(untagged.blobs)
        assert len(only_one) == 3
        freed = sum(len(one.blobs[d]) for d in only_one)
        survivors = {*two.blobs, *untagged.blobs}

        before = stored_blobs(root)
        assert gc(proxy, "--dry-run") == Report(len(survivors), "would delete", 3, freed, 0)
        assert stored_blobs(root) == before
        assert go_gc_dry_run(root, tmp_path) == (len(survivors), 3, 0)

        assert gc(proxy) == Report(len(survivors), "deleted", 3, freed, 0)
        assert set(stored_blobs(root)) == survivors
        for digest in only_one:
            assert not blob_path(root, digest).parent.exists()
        client.assert_pullable(two, "two")
        client.assert_pullable(untagged, untagged.digest)
        for digest in only_one - {one.digest}:
            client.assert_blob_gone(digest)
        # A second run finds nothing more; neither does the Go registry's collector.
        assert gc(proxy) == Report(len(survivors), "deleted", 0, 0, 0)
        assert go_gc_dry_run(root, tmp_path) == (len(survivors), 0, 0)

        # --delete-untagged drops the untagged manifest, then its own blobs.
        only_untagged = set(untagged.blobs) - set(two.blobs)
        untagged_freed = sum(len(untagged.blobs[d]) for d in only_untagged)
        assert len(only_untagged) == 3
        report = gc(proxy, "--delete-untagged", "--dry-run")
        assert report == Report(len(two.blobs), "would delete", 3, untagged_freed, 1)
        assert set(stored_blobs(root)) == survivors
        assert go_gc_dry_run(root, tmp_path, "--delete-untagged") == (len(two.blobs), 3, 1)

        report = gc(proxy, "--delete-untagged")
        assert report == Report(len(two.blobs), "deleted", 3, untagged_freed, 1)
        assert set(stored_blobs(root)) == set(two.blobs)
        assert stored_blobs(root) == two.blobs  # the survivors' bytes are untouched
        missing = client.http.get(
            f"/v2/{REPO}/manifests/{untagged.digest}", headers={"Accept": OCI_MANIFEST}
        )
        assert missing.status_code == 404
        assert missing.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        client.assert_pullable(two, "two")
        tags = client.http.get(f"/v2/{REPO}/tags/list")
        assert tags.json() == {"name": REPO, "tags": ["two"]}
        assert go_gc_dry_run(root, tmp_path, "--delete-untagged") == (len(two.blobs), 0, 0)

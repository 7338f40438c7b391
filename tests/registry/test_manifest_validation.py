"""The Go registry's `validation` section: foreign-layer URLs and sparse indexes.

Each case builds the registry from a Go-style configuration file and pushes
through the HTTP API, as a client would.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from registry_proxy.app import create_app
from registry_proxy.config import ConfigError, load_config
from tests.registry.conftest import ISSUER, SERVICE, Mint
from tests.registry.test_api_bad_input import ALL, push_blob, snapshot

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"

CONFIG = b'{"architecture":"amd64","os":"windows"}'
LAYER = b"a layer that is stored here"
WINDOWS_BASE = b"a base layer that is never pushed"
ALLOW = [r"^https?://([^/]+\.)*example\.com/"]
DENY = [r"^https?://www\.example\.com/"]


def write_config(tmp_path: Path, keys_dir: Path, root: Path, validation: dict[str, Any]) -> Path:
    config = {
        "version": 0.1,
        "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
        "auth": {
            "token": {
                "realm": "http://127.0.0.1:1/token",
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(keys_dir / "bundle.pem"),
            }
        },
    }
    if validation:
        config["validation"] = validation
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    return path


class Registry:
    def __init__(self, tmp_path: Path, keys_dir: Path, root: Path) -> None:
        self.tmp_path, self.keys_dir, self.root = tmp_path, keys_dir, root
        self._clients: list[TestClient] = []

    def __call__(self, validation: dict[str, Any] | None = None) -> TestClient:
        path = write_config(self.tmp_path, self.keys_dir, self.root, validation or {})
        client = TestClient(create_app(load_config(path, {})))
        client.__enter__()
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.__exit__(None, None, None)


@pytest.fixture
def make(tmp_path: Path, keys_dir: Path, storage_root: Path) -> Iterator[Registry]:
    registry = Registry(tmp_path, keys_dir, storage_root)
    yield registry
    registry.close()


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}


def foreign_manifest(*urls: str, media_type: str = FOREIGN) -> dict[str, Any]:
    extra = {"urls": list(urls)} if urls else {}
    return {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, CONFIG),
        "layers": [descriptor(media_type, WINDOWS_BASE, **extra), descriptor(DOCKER_LAYER, LAYER)],
    }


def put(client: TestClient, mint: Mint, doc: dict[str, Any], reference: str = "v1") -> Any:
    body = json.dumps(doc).encode()
    return client.put(
        f"/v2/team/app/manifests/{reference}",
        content=body,
        headers={**mint(ALL), "Content-Type": doc["mediaType"]},
    )


def push_blobs(client: TestClient, mint: Mint, *blobs: bytes) -> None:
    for data in blobs:
        push_blob(client, mint, data)


def refused(answer: Any, code: str = "MANIFEST_INVALID") -> bool:
    return bool(answer.status_code == 400 and answer.json()["errors"][0]["code"] == code)


def test_without_lists_no_url_is_allowed(make: Registry, mint: Mint, storage_root: Path) -> None:
    client = make()
    push_blobs(client, mint, CONFIG, LAYER)
    before = snapshot(storage_root)
    answer = put(client, mint, foreign_manifest("https://layers.example.com/base.tar.gz"))
    assert refused(answer), answer.text
    assert "URL not allowed" in answer.json()["errors"][0]["detail"]
    assert snapshot(storage_root) == before
    # Without any foreign layer the same repository takes pushes as ever.
    plain = foreign_manifest()
    plain["layers"] = plain["layers"][1:]
    assert put(client, mint, plain).status_code == 201


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://layers.example.com/base.tar.gz", True),
        ("http://example.com/base.tar.gz", True),
        ("https://cdn.layers.example.com/a", True),
        ("https://www.example.com/base.tar.gz", False),  # denied
        ("https://example.org/base.tar.gz", False),  # not allowed
        ("https://evil.test/?https://example.com/", False),  # allow is anchored
        ("ftp://layers.example.com/base.tar.gz", False),  # only http(s)
        ("https://layers.example.com/base.tar.gz#frag", False),  # no fragment
        ("https://layers.example.com/a b", True),  # Go's url.Parse takes a blank in a path
        ("https://layers example.com/a", False),  # ... not in a host
        (" https://layers.example.com/a", False),  # nor before the scheme
        ("https://layers.example.com/\x00", False),
        ("https://layers.example.com/\ud800", False),  # a lone surrogate, escaped in the JSON
        ("https://layers.example.com/%zz", False),
        ("https://layers.example.com/\u00e9t\u00e9", True),  # non-ASCII, matched as text
    ],
)
def test_allow_and_deny(make: Registry, mint: Mint, url: str, ok: bool) -> None:
    client = make({"manifests": {"urls": {"allow": ALLOW, "deny": DENY}}})
    push_blobs(client, mint, CONFIG, LAYER)
    answer = put(client, mint, foreign_manifest(url))
    if ok:
        assert answer.status_code == 201, answer.text
    else:
        assert refused(answer), answer.text


def test_every_url_of_a_layer_must_pass(make: Registry, mint: Mint) -> None:
    client = make({"manifests": {"urls": {"allow": ALLOW}}})
    push_blobs(client, mint, CONFIG, LAYER)
    two = foreign_manifest("https://a.example.com/x", "https://elsewhere.test/x")
    assert refused(put(client, mint, two))
    assert put(client, mint, foreign_manifest("https://a.example.com/x")).status_code == 201


def test_a_deny_list_alone_lets_every_other_url_through(make: Registry, mint: Mint) -> None:
    # As the Go registry does (its configuration document says such pushes fail).
    client = make({"manifests": {"urls": {"deny": DENY}}})
    push_blobs(client, mint, CONFIG, LAYER)
    assert put(client, mint, foreign_manifest("https://anywhere.test/x")).status_code == 201
    assert refused(put(client, mint, foreign_manifest("https://www.example.com/x"), "v2"))
    assert refused(put(client, mint, foreign_manifest("ftp://anywhere.test/x"), "v3"))


def test_a_foreign_layer_needs_a_url_and_other_layers_need_their_bytes(
    make: Registry, mint: Mint
) -> None:
    client = make({"manifests": {"urls": {"allow": ALLOW}}})
    push_blobs(client, mint, CONFIG, LAYER)
    assert refused(put(client, mint, foreign_manifest()))
    # An ordinary Docker layer with URLs: the URLs do not excuse its absence.
    listed = foreign_manifest("https://a.example.com/x", media_type=DOCKER_LAYER)
    assert refused(put(client, mint, listed), "MANIFEST_BLOB_UNKNOWN")


def test_oci_layers(make: Registry, mint: Mint) -> None:
    client = make({"manifests": {"urls": {"allow": ALLOW}}})
    push_blobs(client, mint, CONFIG, LAYER)

    def oci(media_type: str, *urls: str) -> dict[str, Any]:
        extra = {"urls": list(urls)} if urls else {}
        return {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, CONFIG),
            "layers": [descriptor(media_type, WINDOWS_BASE, **extra)],
        }

    # Non-distributable with allowed URLs: the bytes may stay elsewhere.
    assert (
        put(client, mint, oci(OCI_NONDISTRIBUTABLE, "https://a.example.com/x")).status_code == 201
    )
    # ... with refused URLs: refused; with none: the bytes must be here.
    assert refused(put(client, mint, oci(OCI_NONDISTRIBUTABLE, "https://a.test/x")))
    assert refused(put(client, mint, oci(OCI_NONDISTRIBUTABLE)), "MANIFEST_BLOB_UNKNOWN")
    # A distributable layer's URLs are checked, and its bytes are needed all the same.
    assert refused(put(client, mint, oci(OCI_LAYER, "https://a.test/x")))
    assert refused(
        put(client, mint, oci(OCI_LAYER, "https://a.example.com/x")), "MANIFEST_BLOB_UNKNOWN"
    )


def test_validation_disabled_takes_any_http_url(make: Registry, mint: Mint) -> None:
    client = make({"disabled": True})
    push_blobs(client, mint, CONFIG, LAYER)
    assert put(client, mint, foreign_manifest("https://anywhere.test/x")).status_code == 201
    assert refused(put(client, mint, foreign_manifest("file:///etc/passwd"), "v2"))
    # The older `enabled: true` outweighs `disabled`, as in the Go registry.
    client = make({"enabled": True, "disabled": True})
    assert refused(put(client, mint, foreign_manifest("https://anywhere.test/x"), "v3"))


def test_catastrophic_patterns_and_huge_urls_run_in_linear_time(make: Registry, mint: Mint) -> None:
    client = make({"manifests": {"urls": {"allow": [r"^(a+)+$", r"^https://(\w+\.)*ok\.test/"]}}})
    push_blobs(client, mint, CONFIG, LAYER)
    hostile = "a" * 100_000 + "!"
    started = time.monotonic()
    assert refused(put(client, mint, foreign_manifest(hostile)))
    long_host = "https://" + "x." * 200_000 + "ok.test/layer"
    assert put(client, mint, foreign_manifest(long_host)).status_code == 201
    # Backtracking would take longer than the universe has; RE2 takes milliseconds.
    assert time.monotonic() - started < 30


# --- indexes ---------------------------------------------------------------------


def index_with(children: list[tuple[bytes, str, str]]) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            descriptor(OCI_MANIFEST, body, platform={"os": os_, "architecture": arch})
            for body, os_, arch in children
        ],
    }


def image(client: TestClient, mint: Mint, arch: str, push: bool) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, CONFIG),
        "layers": [descriptor(OCI_LAYER, LAYER)],
        "annotations": {"arch": arch},
    }
    body = json.dumps(doc).encode()
    if push:
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        assert put(client, mint, doc, digest).status_code == 201
    return body


@pytest.mark.parametrize(
    ("validation", "expected"),
    [
        ({}, "MANIFEST_BLOB_UNKNOWN"),
        ({"manifests": {"indexes": {"platforms": "all"}}}, "MANIFEST_BLOB_UNKNOWN"),
        ({"manifests": {"indexes": {"platforms": "none"}}}, None),
        ({"disabled": True}, None),
        # `list` with no platforms checks every child, as the Go registry does.
        ({"manifests": {"indexes": {"platforms": "list"}}}, "MANIFEST_BLOB_UNKNOWN"),
    ],
)
def test_sparse_index(
    make: Registry, mint: Mint, validation: dict[str, Any], expected: str | None
) -> None:
    client = make(validation)
    push_blobs(client, mint, CONFIG, LAYER)
    present = image(client, mint, "amd64", push=True)
    absent = image(client, mint, "arm64", push=False)
    doc = index_with([(present, "linux", "amd64"), (absent, "linux", "arm64")])
    answer = put(client, mint, doc, "multi")
    if expected is None:
        assert answer.status_code == 201, answer.text
        stored = client.get("/v2/team/app/manifests/multi", headers=mint(ALL))
        assert stored.status_code == 200 and json.loads(stored.content) == doc
    else:
        assert refused(answer, expected), answer.text
        detail = answer.json()["errors"][0]["detail"]
        assert hashlib.sha256(absent).hexdigest() in json.dumps(detail)


def test_platform_list_checks_only_the_listed_platforms(make: Registry, mint: Mint) -> None:
    client = make(
        {
            "manifests": {
                "indexes": {
                    "platforms": "List",  # as the Go registry's example spells it
                    "platformlist": [{"os": "linux", "architecture": "amd64"}],
                }
            }
        }
    )
    push_blobs(client, mint, CONFIG, LAYER)
    amd64 = image(client, mint, "amd64", push=True)
    arm64 = image(client, mint, "arm64", push=False)
    missing_amd64 = image(client, mint, "amd64-other", push=False)
    ok = index_with([(amd64, "linux", "amd64"), (arm64, "linux", "arm64")])
    assert put(client, mint, ok, "listed").status_code == 201
    bad = index_with([(missing_amd64, "linux", "amd64"), (arm64, "linux", "arm64")])
    assert refused(put(client, mint, bad, "listed"), "MANIFEST_BLOB_UNKNOWN")
    # A child that names no platform matches none in the list.
    unnamed = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_MANIFEST, missing_amd64)],
    }
    assert put(client, mint, unnamed, "unnamed").status_code == 201


@pytest.mark.parametrize("platform", ["linux/amd64", {"os": 5, "architecture": "amd64"}])
def test_a_malformed_platform_is_refused(make: Registry, mint: Mint, platform: Any) -> None:
    client = make({"manifests": {"indexes": {"platforms": "none"}}})
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_MANIFEST, b"{}", platform=platform)],
    }
    assert refused(put(client, mint, doc, "bad"))


# --- configuration ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("validation", "named"),
    [
        ({"manifests": {"urls": {"allow": ["(unclosed"]}}}, "validation.manifests.urls.allow"),
        ({"manifests": {"urls": {"deny": [r"(a)\1"]}}}, "validation.manifests.urls.deny"),
        ({"manifests": {"urls": {"allow": "^https://"}}}, "validation.manifests.urls.allow"),
        ({"manifests": {"indexes": {"platforms": "some"}}}, "validation.manifests.indexes"),
        ({"manifests": {"indexes": {"platformlist": [{"os": "linux"}]}}}, "platformlist"),
        ({"disabled": "yes"}, "validation.disabled"),
        ({"manifests": {"sizes": {}}}, "validation.manifests.sizes"),
    ],
)
def test_bad_validation_keys_stop_the_start_naming_the_key(
    tmp_path: Path, keys_dir: Path, validation: dict[str, Any], named: str
) -> None:
    path = write_config(tmp_path, keys_dir, tmp_path / "root", validation)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert named in str(caught.value)

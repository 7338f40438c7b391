"""The Go registry and registry_proxy serve each other's data directory, byte for byte.

skopeo pushes into one server; that server is stopped; the other one serves
the same directory and skopeo pulls: manifests (`inspect --raw`) and every
blob file of the pulled OCI layout must equal the originals. The Go registry
runs without auth; registry_proxy checks tokens from our token server.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.images import (
    OCI_INDEX,
    OCI_MANIFEST,
    write_oci_index_layout,
    write_oci_layout,
)
from tests.support.peers import GoRegistry, Skopeo
from tests.support.registry_proxy import RegistryProxy
from tests.support.tokenserver import TokenServer

pytestmark = pytest.mark.e2e

ADMIN, ADMIN_PASSWORD = "root", "root-pw-interop"
CREDS = f"{ADMIN}:{ADMIN_PASSWORD}"
PLAIN = "--tls-verify=false"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    with TokenServer(tmp_path_factory.mktemp("interop-ts")) as server:
        server.add_user(ADMIN, ADMIN_PASSWORD, "admin")
        yield server


@dataclass(frozen=True)
class Source:
    """An OCI layout to push as `repo:tag`, with extra `skopeo copy` flags."""

    repo: str
    tag: str
    layout: Path
    flags: tuple[str, ...]
    media_type: str  # what the registry must end up storing

    @property
    def all_images(self) -> bool:
        return "--all" in self.flags


@dataclass(frozen=True)
class Pushed:
    source: Source
    manifest: bytes  # the raw manifest as the first server serves it


def blob_files(layout: Path) -> dict[str, bytes]:
    """Every blob of an OCI layout by file name (hex digest), each checked against its name."""
    blobs = {p.name: p.read_bytes() for p in (layout / "blobs" / "sha256").iterdir()}
    for name, data in blobs.items():
        assert hashlib.sha256(data).hexdigest() == name, f"{layout}: blob {name} is corrupt"
    return blobs


def dir_blob_files(directory: Path) -> dict[str, bytes]:
    """The blobs of a skopeo `dir:` copy (files named by hex digest), the manifest included."""
    blobs = {
        p.name: p.read_bytes()
        for p in directory.iterdir()
        if len(p.name) == 64 and all(c in "0123456789abcdef" for c in p.name)
    }
    for name, data in blobs.items():
        assert hashlib.sha256(data).hexdigest() == name, f"{directory}: blob {name} is corrupt"
    manifest = (directory / "manifest.json").read_bytes()
    blobs[hashlib.sha256(manifest).hexdigest()] = manifest
    return blobs


def make_sources(tmp_path: Path) -> list[Source]:
    """A 4-layer OCI image, a 2-platform OCI index, and an image pushed as Docker schema 2."""
    image = tmp_path / "src-image"
    write_oci_layout(image, tag="v1", layers=4, seed="interop-image")
    index = tmp_path / "src-index"
    write_oci_index_layout(
        index, tag="multi", platforms=("linux/amd64", "linux/arm64"), layers=2, seed="interop-idx"
    )
    docker = tmp_path / "src-docker"
    write_oci_layout(docker, tag="v1", layers=3, seed="interop-docker")
    return [
        Source("lib/app", "v1", image, (), OCI_MANIFEST),
        Source("lib/multi", "multi", index, ("--all",), OCI_INDEX),
        # skopeo rewrites this one as a Docker schema 2 manifest on the way in.
        Source("lib/docker", "v1", docker, ("--format", "v2s2"), DOCKER_MANIFEST),
    ]


def creds_flags(creds: str | None, prefix: str = "") -> list[str]:
    """`--creds U:P` (or `--src-creds`, `--dest-creds`); nothing for a server without auth."""
    return [f"--{prefix}creds", creds] if creds else []


def push_all(skopeo: Skopeo, addr: str, sources: list[Source], creds: str | None) -> list[Pushed]:
    pushed = []
    for src in sources:
        ref = f"docker://{addr}/{src.repo}:{src.tag}"
        skopeo(
            "copy", *src.flags, "--dest-tls-verify=false", *creds_flags(creds, "dest-"),
            f"oci:{src.layout}:{src.tag}", ref,
        )  # fmt: skip
        raw = skopeo("inspect", "--raw", PLAIN, *creds_flags(creds), ref).stdout.encode()
        assert json.loads(raw)["mediaType"] == src.media_type
        pushed.append(Pushed(src, raw))
    return pushed


def pull_and_compare(
    skopeo: Skopeo, addr: str, pushed: list[Pushed], creds: str | None, out: Path
) -> None:
    out.mkdir(exist_ok=True)
    for item in pushed:
        src = item.source
        ref = f"docker://{addr}/{src.repo}:{src.tag}"
        raw = skopeo("inspect", "--raw", PLAIN, *creds_flags(creds), ref).stdout.encode()
        assert raw == item.manifest, f"{src.repo}: manifest bytes differ"
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if not src.all_images:
            inspected = json.loads(skopeo("inspect", PLAIN, *creds_flags(creds), ref).stdout)
            assert inspected["Digest"] == digest

        dest = out / src.repo.replace("/", "_")
        original = blob_files(src.layout)
        src_flags = ["--src-tls-verify=false", *creds_flags(creds, "src-")]
        if src.media_type != DOCKER_MANIFEST:
            # An OCI manifest or index is pulled into an OCI layout unchanged: the very
            # same blob set as the source layout, the served manifest among them.
            all_flag = ["--all"] if src.all_images else []
            skopeo("copy", *all_flag, *src_flags, ref, f"oci:{dest}:{src.tag}")
            pulled = blob_files(dest)
            (top,) = json.loads((dest / "index.json").read_text())["manifests"]
            assert top["digest"] == digest
            assert pulled[digest.removeprefix("sha256:")] == item.manifest
        else:
            # skopeo would rewrite a Docker manifest and its config for an OCI layout;
            # its `dir:` transport keeps every byte as served.
            skopeo("copy", *src_flags, ref, f"dir:{dest}")
            pulled = dir_blob_files(dest)
            assert (dest / "manifest.json").read_bytes() == item.manifest
            # The served manifest replaces the source's OCI manifest; config and layers stay.
            (source,) = json.loads((src.layout / "index.json").read_text())["manifests"]
            del original[source["digest"].removeprefix("sha256:")]
            original[digest.removeprefix("sha256:")] = item.manifest
        assert set(pulled) == set(original), f"{src.repo}: blob sets differ"
        for name, data in pulled.items():
            assert data == original[name], f"{src.repo}: blob {name} differs"


def test_go_registry_data_served_by_registry_proxy(tokens: TokenServer, tmp_path: Path) -> None:
    skopeo = Skopeo(tmp_path)
    sources = make_sources(tmp_path)

    go = GoRegistry(tmp_path / "go")
    with go:
        pushed = push_all(skopeo, go.addr, sources, None)
    assert go.proc is None

    proxy = RegistryProxy(tmp_path / "proxy", tokens.registry_auth(), root=go.storage_dir)
    with proxy:
        pull_and_compare(skopeo, proxy.addr, pushed, CREDS, tmp_path / "pulled")
        # Tags and the catalog come from the Go registry's directory too.
        token = httpx.get(
            tokens.realm,
            params={"service": tokens.service, "scope": "registry:catalog:*"},
            auth=(ADMIN, ADMIN_PASSWORD),
        ).json()["token"]
        catalog = httpx.get(
            f"{proxy.url}/v2/_catalog", headers={"Authorization": f"Bearer {token}"}
        )
        assert catalog.status_code == 200, catalog.text
        assert catalog.json()["repositories"] == ["lib/app", "lib/docker", "lib/multi"]
    # Nothing rewrote the Go registry's manifests: a restarted Go registry still agrees.
    with GoRegistry(tmp_path / "go") as again:
        for item in pushed:
            ref = f"docker://{again.addr}/{item.source.repo}:{item.source.tag}"
            assert skopeo("inspect", "--raw", PLAIN, ref).stdout.encode() == item.manifest


def test_registry_proxy_data_served_by_go_registry(tokens: TokenServer, tmp_path: Path) -> None:
    skopeo = Skopeo(tmp_path)
    sources = make_sources(tmp_path)
    go = GoRegistry(tmp_path / "go")

    proxy = RegistryProxy(tmp_path / "proxy", tokens.registry_auth(), root=go.storage_dir)
    with proxy:
        pushed = push_all(skopeo, proxy.addr, sources, CREDS)
    assert proxy.proc is None

    with go:
        pull_and_compare(skopeo, go.addr, pushed, None, tmp_path / "pulled")
        tags = httpx.get(f"{go.url}/v2/lib/app/tags/list")
        assert tags.json() == {"name": "lib/app", "tags": ["v1"]}
        catalog = httpx.get(f"{go.url}/v2/_catalog")
        assert catalog.json()["repositories"] == ["lib/app", "lib/docker", "lib/multi"]

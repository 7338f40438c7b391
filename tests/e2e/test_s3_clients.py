"""Real clients against our registry storing in a real Swift, with and without redirects.

With `storage.redirect.disable: false` every blob GET is answered 307 to a
presigned URL on the store, and the clients fetch the bytes from Swift.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.images import write_docker_archive, write_oci_index_layout, write_oci_layout
from tests.support.peers import Dockerd, Skopeo, short_tempdir
from tests.support.podman import Podman
from tests.support.registry_proxy import RegistryProxy
from tests.support.swift import Swift
from tests.support.tokenserver import TokenServer

pytestmark = pytest.mark.e2e

USER, PASSWORD = "sol", "sol-pw-1"


@dataclass
class Stack:
    tokens: TokenServer
    registry: RegistryProxy
    swift: Swift
    redirect: bool

    def blob_gets(self, since: int) -> list[dict[str, Any]]:
        return [
            e
            for e in _entries(self.registry.log_text()[since:])
            if e.get("msg") == "request" and e["method"] == "GET" and "/blobs/sha256:" in e["path"]
        ]


def _entries(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module", params=[False, True], ids=["served", "redirected"])
def stack(
    request: pytest.FixtureRequest, swift: Swift, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    redirect: bool = request.param
    work = tmp_path_factory.mktemp("s3-clients")
    with TokenServer(work / "ts", extra={"users": {"bcrypt_cost": 4}}) as tokens:
        tokens.add_user(USER, PASSWORD)
        registry = RegistryProxy(
            work / "registry",
            tokens.registry_auth(),
            s3=swift.s3_config(swift.new_bucket("clients")),
            extra={"storage": {"redirect": {"disable": not redirect}}},
        )
        with registry:
            yield Stack(tokens, registry, swift, redirect)


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def test_skopeo_image_and_index_round_trip(stack: Stack, tmp_path: Path) -> None:
    skopeo = Skopeo(tmp_path)
    addr = stack.registry.addr
    auth = ("--tls-verify=false", "--creds", f"{USER}:{PASSWORD}")
    image = write_oci_layout(tmp_path / "src", tag="v1", layers=3, seed="sol-app")
    repo = f"docker://{addr}/{USER}/app"
    skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", f"{USER}:{PASSWORD}",
        f"oci:{tmp_path / 'src'}:v1", f"{repo}:v1",
    )  # fmt: skip
    index = write_oci_index_layout(tmp_path / "multi", tag="all", seed="sol-multi")
    skopeo(
        "copy", "--all", "--dest-tls-verify=false", "--dest-creds", f"{USER}:{PASSWORD}",
        f"oci:{tmp_path / 'multi'}:all", f"{repo}:all",
    )  # fmt: skip

    offset = len(stack.registry.log_text())
    dst = tmp_path / "dst"
    skopeo(
        "copy", "--src-tls-verify=false", "--src-creds", f"{USER}:{PASSWORD}",
        f"{repo}:v1", f"oci:{dst}:v1",
    )  # fmt: skip
    assert _blob(dst, image.manifest_digest) == image.manifest
    assert _blob(dst, image.config_digest) == image.config
    for digest in image.layer_digests:
        assert _blob(dst, digest) == _blob(tmp_path / "src", digest)
    pulled = tmp_path / "pulled-all"
    skopeo(
        "copy", "--all", "--src-tls-verify=false", "--src-creds", f"{USER}:{PASSWORD}",
        f"{repo}:all", f"oci:{pulled}:all",
    )  # fmt: skip
    assert _blob(pulled, index.index_digest) == index.index
    for platform in index.images.values():
        for digest in platform.layer_digests:
            assert _blob(pulled, digest) == _blob(tmp_path / "multi", digest)

    gets = stack.blob_gets(offset)
    assert gets
    assert {e["status"] for e in gets} == ({307} if stack.redirect else {200})

    tags = json.loads(skopeo("list-tags", *auth, repo).stdout)
    assert sorted(tags["Tags"]) == ["all", "v1"]
    skopeo("delete", *auth, f"{repo}:v1")
    gone = skopeo("inspect", "--raw", *auth, f"{repo}:v1", check=False)
    assert gone.returncode != 0 and "manifest unknown" in gone.stderr.lower()


def test_docker_and_podman_push_and_pull(stack: Stack, dockerd: Dockerd, tmp_path: Path) -> None:
    addr = stack.registry.addr
    image = f"{addr}/{USER}/docked:v1"
    dockerd.docker("login", addr, "-u", USER, "--password-stdin", input=PASSWORD)
    archive = write_docker_archive(
        tmp_path / "img.tar", repo_tag=image, seed=f"sol-{stack.redirect}"
    )
    dockerd.docker("load", "-i", str(archive.path))
    dockerd.docker("push", image)
    dockerd.docker("rmi", image)
    offset = len(stack.registry.log_text())
    dockerd.docker("pull", image)
    inspected = json.loads(dockerd.docker("image", "inspect", image).stdout)
    assert inspected[0]["Id"] == archive.config_digest
    assert {e["status"] for e in stack.blob_gets(offset)} == ({307} if stack.redirect else {200})

    podman = Podman(short_tempdir("s3pm"))
    podman("login", "--tls-verify=false", "-u", USER, "-p", PASSWORD, addr)
    offset = len(stack.registry.log_text())
    podman("pull", "--tls-verify=false", image)
    assert {e["status"] for e in stack.blob_gets(offset)} == ({307} if stack.redirect else {200})


def test_a_redirect_is_a_short_lived_signed_url_on_the_store(stack: Stack) -> None:
    data = b"redirected bytes " * 1000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=stack.registry.url) as client:
        token = httpx.get(
            f"{stack.tokens.url}/token",
            params={"service": "registry", "scope": f"repository:{USER}/raw:pull,push"},
            auth=(USER, PASSWORD),
        ).json()["token"]
        bearer = {"Authorization": f"Bearer {token}"}
        pushed = client.post(
            f"/v2/{USER}/raw/blobs/uploads/",
            params={"digest": digest},
            content=data,
            headers=bearer,
        )
        assert pushed.status_code == 201
        head = client.head(f"/v2/{USER}/raw/blobs/{digest}", headers=bearer)
        assert head.status_code == 200  # HEAD is answered here, from the store's metadata
        got = client.get(f"/v2/{USER}/raw/blobs/{digest}", headers=bearer)
        if not stack.redirect:  # off (the default): the registry serves the bytes itself
            assert got.status_code == 200 and got.content == data
            assert "location" not in got.headers
            return
        assert got.status_code == 307 and got.headers["docker-content-digest"] == digest
        location = got.headers["location"]
        assert location.startswith(stack.swift.endpoint)
        assert "X-Amz-Signature=" in location and "X-Amz-Expires=1200" in location
        assert httpx.get(location).content == data
        ranged = httpx.get(location, headers={"Range": "bytes=0-9"})
        assert ranged.status_code == 206 and ranged.content == data[:10]
        # Without pull on the repository there is no redirect at all.
        assert client.get(f"/v2/{USER}/raw/blobs/{digest}").status_code == 401

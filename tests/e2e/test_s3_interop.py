"""One bucket, two registries: what the Go registry's `s3` driver writes, ours serves, and back.

Both run on the same Swift bucket and root directory; blobs go up in one
PATCH and in two, as clients send them, and come back byte-identical from the
other registry, with the manifest, its tag and the tag list.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.images import write_oci_layout
from tests.support.minter import Minter, log_problems
from tests.support.peers import GoRegistry, Skopeo
from tests.support.registry_proxy import RegistryProxy
from tests.support.swift import Swift
from tests.support.tokenserver import TokenServer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MiB = 1024 * 1024


@dataclass
class Pair:
    go: httpx.Client
    ours: httpx.Client


@pytest.fixture
def pair(swift: Swift, tmp_path: Path) -> Iterator[Pair]:
    bucket = swift.new_bucket("interop")
    minter = Minter(tmp_path / "keys")
    go_s3 = swift.s3_config(bucket, rootdirectory="/shared", v4auth=True)
    del go_s3["forcepathstyle"]  # 2.8 has no such key: an endpoint means path style
    repo_scope = "repository:team/app:pull,push,delete"
    with (
        GoRegistry(tmp_path / "go", s3=go_s3) as go,
        RegistryProxy(
            tmp_path / "ours",
            minter.token_auth,
            s3=swift.s3_config(bucket, rootdirectory="/shared"),
        ) as ours,
        httpx.Client(
            base_url=go.url, timeout=120, trust_env=False, follow_redirects=True
        ) as go_client,
        httpx.Client(
            base_url=ours.url, headers=minter.headers(repo_scope), timeout=120, trust_env=False
        ) as ours_client,
    ):
        yield Pair(go_client, ours_client)
        problems = log_problems(ours.log_text())
        assert not problems, "\n".join(problems[:5])


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(client: httpx.Client, repo: str, data: bytes, pieces: int) -> str:
    digest = digest_of(data)
    started = client.post(f"/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    step = -(-len(data) // pieces)
    for offset in range(0, len(data), step):
        chunk = data[offset : offset + step]
        sent = client.patch(
            location,
            content=chunk,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
            },
        )
        assert sent.status_code == 202, sent.text
        location = sent.headers["Location"]
    # The Go registry keeps its upload state in the Location's query: keep it.
    done = client.put(httpx.URL(location).copy_merge_params({"digest": digest}))
    assert done.status_code == 201, done.text
    return digest


def push_image(client: httpx.Client, repo: str, tag: str) -> tuple[bytes, dict[str, bytes]]:
    """A config, a one-PATCH layer and a two-PATCH layer, then a manifest under `tag`."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "n": os.urandom(4).hex()}).encode()
    blobs = {
        push_blob(client, repo, config, 1): config,
        push_blob(client, repo, (one := os.urandom(13 * MiB)), 1): one,
        push_blob(client, repo, (two := os.urandom(17 * MiB + 5)), 2): two,
    }
    descriptors = [
        {"mediaType": media, "digest": digest, "size": len(data)}
        for (digest, data), media in zip(
            blobs.items(),
            [
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar",
                "application/vnd.oci.image.layer.v1.tar",
            ],
            strict=True,
        )
    ]
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptors[0],
            "layers": descriptors[1:],
        }
    ).encode()
    put = client.put(
        f"/v2/{repo}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert put.status_code == 201, put.text
    return manifest, blobs


def assert_serves(
    client: httpx.Client, repo: str, tag: str, manifest: bytes, blobs: dict[str, bytes]
) -> None:
    got = client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
    assert got.status_code == 200, got.text
    assert got.content == manifest
    assert got.headers["Docker-Content-Digest"] == digest_of(manifest)
    tags = client.get(f"/v2/{repo}/tags/list")
    assert tags.status_code == 200
    assert tag in tags.json()["tags"]
    for digest, data in blobs.items():
        blob = client.get(f"/v2/{repo}/blobs/{digest}")
        assert blob.status_code == 200, blob.text
        assert blob.content == data


def test_go_writes_ours_serves(pair: Pair) -> None:
    manifest, blobs = push_image(pair.go, "team/app", "from-go")
    assert_serves(pair.ours, "team/app", "from-go", manifest, blobs)


def test_ours_writes_go_serves(pair: Pair) -> None:
    manifest, blobs = push_image(pair.ours, "team/app", "from-ours")
    assert_serves(pair.go, "team/app", "from-ours", manifest, blobs)
    # And the Go registry's own listing of the bucket sees the repository.
    catalog = pair.go.get("/v2/_catalog")
    assert catalog.status_code == 200
    assert "team/app" in catalog.json()["repositories"]


def test_skopeo_through_either_registry_over_one_bucket(swift: Swift, tmp_path: Path) -> None:
    """skopeo pushes through the Go registry and pulls the same bytes through ours, and back."""
    bucket = swift.new_bucket("skopeo-interop")
    go_s3 = swift.s3_config(bucket, rootdirectory="/shared", v4auth=True)
    del go_s3["forcepathstyle"]
    skopeo = Skopeo(tmp_path)
    creds = ("--creds", "team:team-pw-1")
    with (
        TokenServer(tmp_path / "ts", extra={"users": {"bcrypt_cost": 4}}) as tokens,
        GoRegistry(tmp_path / "go", s3=go_s3) as go,
    ):
        tokens.add_user("team", "team-pw-1")
        ours = RegistryProxy(
            tmp_path / "ours",
            tokens.registry_auth(),
            s3=swift.s3_config(bucket, rootdirectory="/shared"),
        )
        with ours:
            for tag, writer, reader, write_auth, read_auth in (
                ("via-go", go, ours, (), creds),
                ("via-ours", ours, go, creds, ()),
            ):
                source = tmp_path / f"src-{tag}"
                image = write_oci_layout(source, tag="v1", layers=3, seed=tag)
                skopeo(
                    "copy", "--dest-tls-verify=false",
                    *(("--dest-creds", write_auth[1]) if write_auth else ()),
                    f"oci:{source}:v1", f"docker://{writer.addr}/team/app:{tag}",
                )  # fmt: skip
                pulled = tmp_path / f"dst-{tag}"
                skopeo(
                    "copy", "--src-tls-verify=false",
                    *(("--src-creds", read_auth[1]) if read_auth else ()),
                    f"docker://{reader.addr}/team/app:{tag}", f"oci:{pulled}:v1",
                )  # fmt: skip
                for digest in [image.manifest_digest, image.config_digest, *image.layer_digests]:
                    name = digest.removeprefix("sha256:")
                    assert (pulled / "blobs/sha256" / name).read_bytes() == (
                        source / "blobs/sha256" / name
                    ).read_bytes()

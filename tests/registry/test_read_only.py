"""storage.maintenance.readonly: a read-only instance beside a writable one on one storage root.

Every write answers 405 `UNSUPPORTED` in the envelope and leaves the tree
byte-identical; reads, and `registry-proxy gc --dry-run`, work; the writable
instance takes pushes meanwhile, and the read-only one serves them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.minter import Minter, log_problems, push_image
from tests.support.registry_proxy import RegistryProxy

REPO = "team/app"
SCOPE = f"repository:{REPO}:pull,push,delete"
UPLOAD = "0b9a2d6e-6c58-4b5b-9a0e-4bd0a3b9f4a1"


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@dataclass
class Pair:
    writable: RegistryProxy
    read_only: RegistryProxy
    root: Path
    manifest: bytes
    digest: str
    session: str


@pytest.fixture(scope="module")
def minter(tmp_path_factory: pytest.TempPathFactory) -> Minter:
    return Minter(tmp_path_factory.mktemp("read-only-keys"))


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, minter: Minter, real_peer: None
) -> Iterator[Pair]:
    work = tmp_path_factory.mktemp("read-only")
    root = work / "root"
    writable = RegistryProxy(
        work / "writable",
        minter.token_auth,
        root=root,
        extra={"storage": {"maintenance": {"uploadpurging": {"enabled": False}}}},
    )
    # Purging as eager as it can be: a read-only instance must not do it at all.
    read_only = RegistryProxy(
        work / "read-only",
        minter.token_auth,
        root=root,
        extra={
            "storage": {
                "maintenance": {
                    "readonly": {"enabled": True},
                    "uploadpurging": {"age": "1s", "interval": "1s"},
                }
            }
        },
    )
    with writable, read_only, httpx.Client(base_url=writable.url, trust_env=False) as client:
        manifest, digest = push_image(client, REPO, "v1", minter.headers(SCOPE), seed=b"one")
        started = client.post(f"/v2/{REPO}/blobs/uploads/", headers=minter.headers(SCOPE))
        assert started.status_code == 202
        session = started.headers["docker-upload-uuid"]
        yield Pair(writable, read_only, root, manifest, digest, session)
    for registry in (writable, read_only):
        problems = log_problems(registry.log_text())
        assert not problems, "\n".join(problems[:5])


def writes(pair: Pair) -> list[tuple[str, str, bytes]]:
    layer = "sha256:" + hashlib.sha256(b"layer bytes one").hexdigest()
    new = b"a blob nobody may write"
    new_digest = "sha256:" + hashlib.sha256(new).hexdigest()
    session = f"/v2/{REPO}/blobs/uploads/{pair.session}"
    return [
        ("POST", f"/v2/{REPO}/blobs/uploads/", b""),
        ("POST", f"/v2/{REPO}/blobs/uploads/?digest={new_digest}", new),
        ("POST", f"/v2/other/app/blobs/uploads/?mount={layer}&from={REPO}", b""),
        ("PATCH", session, new),
        ("PUT", f"{session}?digest={new_digest}", new),
        ("DELETE", session, b""),
        ("PUT", f"/v2/{REPO}/manifests/v2", pair.manifest),
        ("PUT", f"/v2/{REPO}/manifests/{pair.digest}", pair.manifest),
        ("DELETE", f"/v2/{REPO}/manifests/v1", b""),
        ("DELETE", f"/v2/{REPO}/manifests/{pair.digest}", b""),
        ("DELETE", f"/v2/{REPO}/blobs/{layer}", b""),
        # Never started, and a name that is not one: refused all the same, before anything.
        ("PATCH", f"/v2/{REPO}/blobs/uploads/{UPLOAD}", new),
        ("PUT", "/v2/Not..A..Name/manifests/v1", pair.manifest),
    ]


@pytest.mark.parametrize("authorized", [True, False], ids=["with-token", "anonymous"])
def test_every_write_answers_405_and_changes_nothing(
    pair: Pair, minter: Minter, authorized: bool
) -> None:
    before = snapshot(pair.root)
    headers = minter.headers(SCOPE, "repository:other/app:pull,push") if authorized else {}
    with httpx.Client(base_url=pair.read_only.url, trust_env=False) as client:
        for method, path, body in writes(pair):
            answer = client.request(method, path, content=body, headers=headers)
            assert answer.status_code == 405, (method, path, answer.text)
            error = answer.json()["errors"][0]
            assert error["code"] == "UNSUPPORTED", (method, path)
            assert "read-only" in error["message"]
            assert answer.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
            assert method not in answer.headers["Allow"]
            assert not {"POST", "PUT", "PATCH", "DELETE"} & set(answer.headers["Allow"].split(", "))
        # A large body is refused as well, without the connection going wrong.
        big = client.patch(f"/v2/{REPO}/blobs/uploads/{pair.session}", content=b"x" * (9 << 20))
        assert big.status_code == 405
    assert snapshot(pair.root) == before


def test_reads_work_and_the_writable_instance_takes_pushes_meanwhile(
    pair: Pair, minter: Minter
) -> None:
    headers = minter.headers(SCOPE)
    with (
        httpx.Client(base_url=pair.read_only.url, trust_env=False) as ro,
        httpx.Client(base_url=pair.writable.url, trust_env=False) as rw,
    ):
        got = ro.get(f"/v2/{REPO}/manifests/v1", headers=headers)
        assert got.status_code == 200 and got.content == pair.manifest
        assert ro.head(f"/v2/{REPO}/manifests/v1", headers=headers).status_code == 200
        layer = "sha256:" + hashlib.sha256(b"layer bytes one").hexdigest()
        blob = ro.get(f"/v2/{REPO}/blobs/{layer}", headers=headers)
        assert blob.status_code == 200 and blob.content == b"layer bytes one"
        upload = ro.get(f"/v2/{REPO}/blobs/uploads/{pair.session}", headers=headers)
        assert upload.status_code == 204
        referrers = ro.get(f"/v2/{REPO}/referrers/{pair.digest}", headers=headers)
        assert referrers.status_code == 200

        manifest, digest = push_image(rw, REPO, "v2", headers, seed=b"two")
        served = ro.get(f"/v2/{REPO}/manifests/v2", headers=headers)
        assert served.status_code == 200 and served.content == manifest
        assert served.headers["Docker-Content-Digest"] == digest
        tags = ro.get(f"/v2/{REPO}/tags/list", headers=headers)
        assert tags.json()["tags"] == ["v1", "v2"]


def test_a_read_only_instance_does_not_purge(pair: Pair) -> None:
    # Its purge would run every second on sessions older than a second.
    session = pair.root / "docker/registry/v2/repositories" / REPO / "_uploads" / pair.session
    time.sleep(2.5)
    assert session.is_dir()
    assert "upload purge" not in pair.read_only.log_text()


def test_gc_dry_run_on_the_read_only_configuration(pair: Pair) -> None:
    before = snapshot(pair.root)
    dry = pair.read_only.gc("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "blobs marked" in dry.stdout and "would delete" in dry.stdout
    assert snapshot(pair.root) == before

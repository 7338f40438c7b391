"""Registry processes over one bucket on a real Swift: any process continues any upload.

An upload started on one process (POST, first PATCH) is continued on another
(PATCH) and committed on the first; a process restarted in the middle of an
upload goes on with it; a wrong digest leaves nothing. No lock or memory is
shared between the processes: only the bucket.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.minter import Minter, log_problems
from tests.support.registry_proxy import RegistryProxy
from tests.support.swift import Swift

pytestmark = pytest.mark.e2e

REPO = "team/upload"
SCOPE = f"repository:{REPO}:pull,push,delete"
MiB = 1024 * 1024


@dataclass
class Cluster:
    proxies: list[RegistryProxy]
    minter: Minter
    bucket: str

    def client(self, index: int) -> httpx.Client:
        return httpx.Client(
            base_url=self.proxies[index].url,
            headers=self.minter.headers(SCOPE),
            timeout=120,
            trust_env=False,
        )


@pytest.fixture(scope="module")
def cluster(swift: Swift, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base: Path = tmp_path_factory.mktemp("s3-uploads")
    minter = Minter(base / "keys")
    bucket = swift.new_bucket("uploads")
    s3 = swift.s3_config(bucket)
    proxies = [RegistryProxy(base / name, minter.token_auth, s3=s3) for name in "abc"]
    for proxy in proxies:
        proxy.spawn()
    try:
        for proxy in proxies:
            proxy.wait_ready()
        yield Cluster(proxies, minter, bucket)
    finally:
        for proxy in proxies:
            proxy.stop()
    for proxy in proxies:
        problems = log_problems(proxy.log_text())
        assert not problems, "\n".join(problems[:5])


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def start(client: httpx.Client) -> str:
    response = client.post(f"/v2/{REPO}/blobs/uploads/")
    assert response.status_code == 202, response.text
    return response.headers["Location"]


def patch(client: httpx.Client, location: str, data: bytes, offset: int) -> str:
    response = client.patch(
        location,
        content=data,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + len(data) - 1}",
        },
    )
    assert response.status_code == 202, response.text
    assert response.headers["Range"] == f"0-{offset + len(data) - 1}"
    return response.headers["Location"]


def blob(client: httpx.Client, digest: str) -> bytes:
    response = client.get(f"/v2/{REPO}/blobs/{digest}")
    assert response.status_code == 200, response.text
    assert response.headers["Docker-Content-Digest"] == digest
    return response.content


def test_an_upload_moves_between_processes(cluster: Cluster) -> None:
    chunks = [os.urandom(12 * MiB), os.urandom(7 * MiB + 3)]
    data = b"".join(chunks)
    digest = digest_of(data)
    with cluster.client(0) as a, cluster.client(1) as b:
        location = start(a)
        location = patch(a, location, chunks[0], 0)
        status = b.get(location)
        assert status.status_code == 204
        assert status.headers["Range"] == f"0-{len(chunks[0]) - 1}"
        location = patch(b, location, chunks[1], len(chunks[0]))
        done = a.put(location, params={"digest": digest})
        assert done.status_code == 201, done.text
        assert blob(b, digest) == data
        assert blob(a, digest) == data
        assert b.get(location).status_code == 404


def test_a_single_patch_upload_from_one_process_reads_on_another(cluster: Cluster) -> None:
    data = os.urandom(25 * MiB + 11)
    digest = digest_of(data)
    with cluster.client(2) as c, cluster.client(0) as a:
        location = patch(c, start(c), data, 0)
        assert c.put(location, params={"digest": digest}).status_code == 201
        head = a.head(f"/v2/{REPO}/blobs/{digest}")
        assert head.headers["Content-Length"] == str(len(data))
        ranged = a.get(f"/v2/{REPO}/blobs/{digest}", headers={"Range": "bytes=20971520-20971529"})
        assert ranged.status_code == 206
        assert ranged.content == data[20 * MiB : 20 * MiB + 10]
        assert blob(a, digest) == data


def test_a_restart_in_the_middle_of_an_upload(cluster: Cluster) -> None:
    data = os.urandom(16 * MiB + 1)
    digest = digest_of(data)
    proxy = cluster.proxies[2]
    with cluster.client(2) as c:
        location = patch(c, start(c), data[: 9 * MiB], 0)
    proxy.stop()
    proxy.start()  # a new process: nothing of the upload is in its memory
    with cluster.client(2) as c:
        location = patch(c, location, data[9 * MiB :], 9 * MiB)
        assert c.put(location, params={"digest": digest}).status_code == 201
        assert blob(c, digest) == data


def test_a_wrong_digest_stores_nothing(cluster: Cluster, swift: Swift) -> None:
    data = os.urandom(11 * MiB)
    wrong = digest_of(data + b"?")
    with cluster.client(0) as a, cluster.client(1) as b:
        location = patch(a, start(a), data, 0)
        refused = b.put(location, params={"digest": wrong})
        assert refused.status_code == 400
        assert refused.json()["errors"][0]["code"] == "DIGEST_INVALID"
        assert a.get(location).status_code == 404
        for digest in (wrong, digest_of(data)):
            assert a.head(f"/v2/{REPO}/blobs/{digest}").status_code == 404
    with swift.client() as client:
        pending = [u["Key"] for u in client.multipart_uploads(cluster.bucket)]
        sessions = [k for k in client.keys(cluster.bucket) if "/_uploads/" in k]
    assert pending == []
    assert sessions == []

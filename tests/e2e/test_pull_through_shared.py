"""Two instances of ours on one Swift bucket (its S3 API), pulling through one upstream (the Go
registry 2.8): one upstream fetch per instance however many clients ask at once, and an instance
killed mid-fetch leaves no partial blob in the bucket for the other to serve.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_pull_through import (
    ROOT,
    Upstream,
    _upstreams,
    pulled_sha256,
    upstream_registry,
)
from tests.support.images import write_oci_layout
from tests.support.registry_client import TokenAuth
from tests.support.registry_proxy import RegistryProxy
from tests.support.swift import Swift
from tests.support.tokenserver import TokenServer

pytestmark = pytest.mark.e2e

MB = 1024 * 1024


@dataclass
class Shared:
    upstream: Upstream
    instances: list[RegistryProxy]
    swift: Swift
    bucket: str


@pytest.fixture
def shared(tmp_path: Path, swift: Swift) -> Iterator[Shared]:
    with (
        TokenServer(tmp_path / "ts") as tokens,
        upstream_registry(tmp_path / "up") as upstream,
    ):
        tokens.add_user(*ROOT, "admin")
        bucket = swift.new_bucket("pt")
        extra = {"upstreams": _upstreams(upstream)}
        instances = [
            RegistryProxy(
                tmp_path / f"ours{i}",
                tokens.registry_auth(),
                s3=swift.s3_config(bucket),
                extra=extra,
            )
            for i in range(2)
        ]
        with instances[0], instances[1]:
            yield Shared(upstream, instances, swift, bucket)


def _big_layer(tmp_path: Path, shared: Shared, seed: str, size: int) -> tuple[str, str]:
    src = tmp_path / seed
    image = write_oci_layout(src, tag="v1", layers=1, seed=seed, layer_bytes=size)
    shared.upstream.push(src, "team/big:v1")
    layer = image.layer_digests[0]
    data = (src / "blobs/sha256" / layer.removeprefix("sha256:")).read_bytes()
    return layer, hashlib.sha256(data).hexdigest()


def _misses(instance: RegistryProxy) -> float:
    text = httpx.get(f"{instance.url}/metrics", timeout=10, trust_env=False).text
    found = re.search(r'^registry_proxy_misses_total\{kind="blob"\} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _blob_keys(shared: Shared, digest: str) -> list[str]:
    hex_ = digest.removeprefix("sha256:")
    prefix = f"docker/registry/v2/blobs/sha256/{hex_[:2]}/{hex_}/"
    with shared.swift.client() as client:
        return client.keys(shared.bucket, prefix)


def test_twenty_clients_on_two_instances_cause_one_upstream_fetch_each(
    tmp_path: Path, shared: Shared
) -> None:
    layer, expected = _big_layer(tmp_path, shared, "pt-shared", 64 * MB)
    auth = TokenAuth(*ROOT)

    def pull(i: int) -> str:
        instance = shared.instances[i % 2]
        return pulled_sha256(f"{instance.url}/v2/up/team/big/blobs/{layer}", auth)

    with ThreadPoolExecutor(20) as pool:
        assert set(pool.map(pull, range(20))) == {expected}
    misses = [_misses(instance) for instance in shared.instances]
    assert all(m <= 1 for m in misses), misses
    fetched = [
        line
        for line in shared.upstream.access()
        if f"/blobs/{layer}" in line and "GET" in line and "status=200" in line
    ]
    assert 1 <= len(fetched) == sum(misses) <= 2, (fetched, misses)
    assert _blob_keys(shared, layer) == [
        f"docker/registry/v2/blobs/sha256/{layer[7:9]}/{layer[7:]}/data"
    ]


def test_an_instance_killed_mid_fetch_leaves_no_partial_blob(
    tmp_path: Path, shared: Shared
) -> None:
    layer, expected = _big_layer(tmp_path, shared, "pt-killed", 32 * MB)
    first, second = shared.instances
    auth = TokenAuth(*ROOT)
    url = f"{first.url}/v2/up/team/big/blobs/{layer}"
    with (
        httpx.Client(auth=auth, timeout=60, trust_env=False) as client,
        client.stream("GET", url) as answer,
    ):
        assert answer.status_code == 200
        # A client that reads a little and then nothing: the fetch waits for it,
        # part of the blob on its way into the bucket, when the instance dies.
        next(answer.iter_raw(1 * MB))
        first.kill()
    assert _blob_keys(shared, layer) == []
    assert pulled_sha256(f"{second.url}/v2/up/team/big/blobs/{layer}", auth) == expected
    # Stored once the fetch's commit is done, a moment after the last byte went out.
    deadline = time.monotonic() + 20
    while not _blob_keys(shared, layer) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(_blob_keys(shared, layer)) == 1

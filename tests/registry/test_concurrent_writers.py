"""Two registry_proxy processes over one storage root (a directory, or a bucket on a real
Swift), racing pushes and deletes of one tag.

No lock is shared between them (nor should any be needed): every answer must
be one the spec allows for the request, neither process may log a crash, and
afterwards the tag list and a pull must agree on what the tag is.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from tests.support.minter import OCI_MANIFEST, Minter, log_problems, push_image
from tests.support.registry_proxy import RegistryProxy
from tests.support.swift import Swift

REPO = "team/race"
SCOPE = f"repository:{REPO}:pull,push,delete"
REQUESTS = 64
ROUNDS = 3
WORKERS = 16


@dataclass
class Pair:
    proxies: tuple[RegistryProxy, RegistryProxy]
    minter: Minter
    bucket: str | None = None

    def headers(self) -> dict[str, str]:
        return self.minter.headers(SCOPE)


@pytest.fixture(scope="module", params=["filesystem", pytest.param("s3", marks=pytest.mark.e2e)])
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, real_peer: None
) -> Iterator[Pair]:
    base = tmp_path_factory.mktemp("race")
    minter = Minter(base / "keys")
    root = base / "storage"
    s3 = bucket = None
    if request.param == "s3":
        swift: Swift = request.getfixturevalue("swift")
        bucket = swift.new_bucket("race")
        s3 = swift.s3_config(bucket, rootdirectory="/shared")
    first = RegistryProxy(base / "a", minter.token_auth, root=root, s3=s3)
    second = RegistryProxy(base / "b", minter.token_auth, root=root, s3=s3)
    with first, second:
        yield Pair((first, second), minter, bucket)
    for proxy in (first, second):
        problems = log_problems(proxy.log_text())
        assert not problems, "\n".join(problems[:5])


def send(url: str, method: str, path: str, headers: dict[str, str], body: bytes) -> int:
    with httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
        content = body if method == "PUT" else None
        extra = {"Content-Type": OCI_MANIFEST} if method == "PUT" else {}
        return client.request(method, path, content=content, headers=headers | extra).status_code


def race(pair: Pair, calls: list[tuple[int, str, str]], body: bytes) -> list[int]:
    headers = pair.headers()
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = [
            pool.submit(send, pair.proxies[which].url, method, path, headers, body)
            for which, method, path in calls
        ]
        return [f.result() for f in futures]


def assert_agree(pair: Pair, tag: str, manifest: bytes) -> None:
    """Both processes list the tag exactly when both resolve it, to the pushed bytes."""
    headers = pair.headers()
    for proxy in pair.proxies:
        with httpx.Client(base_url=proxy.url, timeout=30, trust_env=False) as client:
            listed = client.get(f"/v2/{REPO}/tags/list", headers=headers)
            assert listed.status_code == 200, listed.text
            got = client.get(
                f"/v2/{REPO}/manifests/{tag}", headers=headers | {"Accept": OCI_MANIFEST}
            )
            if tag in (listed.json()["tags"] or []):
                assert got.status_code == 200, got.text
                assert got.content == manifest
            else:
                assert got.status_code == 404, got.text
                assert got.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


def test_tag_pushes_and_deletes_race(pair: Pair) -> None:
    with httpx.Client(base_url=pair.proxies[0].url, timeout=30, trust_env=False) as client:
        manifest, _digest = push_image(client, REPO, "t", pair.headers())
    rng = random.Random(1)
    for _ in range(ROUNDS):
        calls = [
            (rng.randrange(2), rng.choice(("PUT", "DELETE")), f"/v2/{REPO}/manifests/t")
            for _ in range(REQUESTS)
        ]
        statuses = race(pair, calls, manifest)
        for (_, method, _), status in zip(calls, statuses, strict=True):
            assert status in ((201,) if method == "PUT" else (202, 404)), (method, status)
        assert 201 in statuses
        assert_agree(pair, "t", manifest)


def test_tag_pushes_race_deletes_by_digest(pair: Pair) -> None:
    with httpx.Client(base_url=pair.proxies[1].url, timeout=30, trust_env=False) as client:
        manifest, digest = push_image(client, REPO, "d", pair.headers(), seed=b"by-digest")
    rng = random.Random(2)
    for _ in range(ROUNDS):
        calls = [
            (
                rng.randrange(2),
                *rng.choice(
                    (
                        ("PUT", f"/v2/{REPO}/manifests/d"),
                        ("PUT", f"/v2/{REPO}/manifests/d"),
                        ("DELETE", f"/v2/{REPO}/manifests/{digest}"),
                        ("DELETE", f"/v2/{REPO}/manifests/d"),
                    )
                ),
            )
            for _ in range(REQUESTS)
        ]
        statuses = race(pair, calls, manifest)
        for (_, method, _), status in zip(calls, statuses, strict=True):
            assert status in ((201,) if method == "PUT" else (202, 404)), (method, status)
        assert_agree(pair, "d", manifest)
        # A tag that is listed names a revision that is still there (by digest, too).
        headers = pair.headers() | {"Accept": OCI_MANIFEST}
        for proxy in pair.proxies:
            with httpx.Client(base_url=proxy.url, timeout=30, trust_env=False) as client:
                if "d" in (
                    client.get(f"/v2/{REPO}/tags/list", headers=headers).json()["tags"] or []
                ):
                    by_digest = client.get(f"/v2/{REPO}/manifests/{digest}", headers=headers)
                    assert by_digest.status_code == 200


def test_nothing_is_left_in_the_trash(pair: Pair, request: pytest.FixtureRequest) -> None:
    if pair.bucket is not None:
        # S3 deletes in place: nothing but the registry's own layout is in the bucket.
        swift: Swift = request.getfixturevalue("swift")
        with swift.client() as client:
            keys = client.keys(pair.bucket)
        assert keys
        assert all(key.startswith("shared/docker/registry/v2/") for key in keys), keys[:5]
        return
    trash = pair.proxies[0].root / "_trash"
    # Every delete removed what it renamed there; nothing waits for a sweep.
    assert trash.is_dir()
    assert list(trash.iterdir()) == []

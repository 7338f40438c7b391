"""Concurrent uploads into one registry process never mix their bytes, and HEAD tells
each blob's exact size and digest.

Bodies are streamed in pieces whose sizes never line up with the server's
batches, so several uploads have batches in flight at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.minter import Minter, log_problems
from tests.support.registry_proxy import RegistryProxy

REPO = "team/isolation"
SCOPE = f"repository:{REPO}:pull,push"
MiB = 1024 * 1024
UPLOADS = 8


def blob(seed: int) -> bytes:
    block = hashlib.sha256(f"blob {seed}".encode()).digest()
    size = 3 * MiB + 4099 * seed + 1
    return (block * (size // len(block) + 1))[:size]


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, real_peer: None
) -> Iterator[tuple[RegistryProxy, Minter]]:
    base = tmp_path_factory.mktemp("isolation")
    minter = Minter(base / "keys")
    with RegistryProxy(base / "proxy", minter.token_auth) as proxy:
        yield proxy, minter
    problems = log_problems(proxy.log_text())
    assert not problems, "\n".join(problems[:5])


def upload(url: str, headers: dict[str, str], seed: int) -> str:
    data, digest = blob(seed), digest_of(blob(seed))
    with httpx.Client(base_url=url, headers=headers, timeout=60, trust_env=False) as client:
        uploads = f"/v2/{REPO}/blobs/uploads/"
        if seed % 2:
            done = client.post(uploads, params={"digest": digest}, content=pieces(data, 100_003))
        else:
            location = client.post(uploads).headers["location"]
            cut = len(data) // 2 + seed
            for start, end in ((0, cut), (cut, len(data))):
                sent = client.patch(
                    location,
                    content=pieces(data[start:end], 65_537),
                    headers={
                        "Content-Range": f"{start}-{end - 1}",
                        "Content-Length": str(end - start),
                    },
                )
                assert sent.status_code == 202, sent.text
                location = sent.headers["location"]
            done = client.put(location, params={"digest": digest})
        assert done.status_code == 201, done.text
        assert done.headers["docker-content-digest"] == digest
    return digest


def test_concurrent_uploads_read_back_byte_identical(
    served: tuple[RegistryProxy, Minter],
) -> None:
    proxy, minter = served
    headers = minter.headers(SCOPE)
    with ThreadPoolExecutor(UPLOADS) as pool:
        digests = list(pool.map(lambda seed: upload(proxy.url, headers, seed), range(UPLOADS)))
    for seed, digest in enumerate(digests):
        data = blob(seed)
        pulled = httpx.get(f"{proxy.url}/v2/{REPO}/blobs/{digest}", headers=headers, timeout=60)
        assert pulled.status_code == 200
        assert len(pulled.content) == len(data) and pulled.content == data, f"blob {seed} differs"
        assert pulled.headers["docker-content-digest"] == digest


@pytest.mark.parametrize("size", [0, 1, 1000, 2 * MiB + 3])
def test_head_answers_the_exact_length_and_digest(
    served: tuple[RegistryProxy, Minter], size: int
) -> None:
    proxy, minter = served
    headers = minter.headers(SCOPE)
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    digest = digest_of(data)
    pushed = httpx.post(
        f"{proxy.url}/v2/{REPO}/blobs/uploads/",
        params={"digest": digest},
        content=data,
        headers=headers,
        timeout=60,
    )
    assert pushed.status_code == 201, pushed.text
    head = httpx.head(f"{proxy.url}/v2/{REPO}/blobs/{digest}", headers=headers)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(size)
    assert head.headers["docker-content-digest"] == digest
    assert head.headers["etag"] == f'"{digest}"'
    assert head.content == b""
    other = digest_of(data + b"!")
    missing = httpx.head(f"{proxy.url}/v2/{REPO}/blobs/{other}", headers=headers)
    assert missing.status_code == 404 and missing.content == b""

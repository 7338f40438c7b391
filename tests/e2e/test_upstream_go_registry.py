"""The upstream client pulls from the Go registry 2.8: with htpasswd Basic, and with our tokens.

skopeo pushes an image made by hand; the client gets and HEADs its manifest
by tag and by digest and reads every blob back byte for byte. With token
auth (the Go registry trusting a token server of ours) one token serves
every request of the repository.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from registry_proxy.upstreams.client import (
    UpstreamClient,
    UpstreamDenied,
    UpstreamError,
    UpstreamNotFound,
)
from tests.conftest import LeakGuard
from tests.support.images import OCI_MANIFEST, ImageInfo, write_oci_layout
from tests.support.peers import GoRegistry, Skopeo
from tests.support.tokenserver import TokenServer
from tokenserver.passwords import hash_password

pytestmark = pytest.mark.e2e

USER, PASSWORD = "puller", "puller-upstream-pw-1"
NAME = f"{USER}/app"


@dataclass
class Upstream:
    registry: GoRegistry
    image: ImageInfo
    tokens: TokenServer | None = None


def push(skopeo: Skopeo, registry: GoRegistry, layout: Path) -> ImageInfo:
    image = write_oci_layout(layout, tag="v1", layers=3, seed="upstream")
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        f"{USER}:{PASSWORD}",
        f"oci:{layout}:v1",
        f"docker://{registry.addr}/{NAME}:v1",
    )
    return image


@pytest.fixture(scope="module")
def basic_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    work = tmp_path_factory.mktemp("basic-upstream")
    htpasswd = work / "htpasswd"
    htpasswd.write_text(f"{USER}:{hash_password(PASSWORD, rounds=4)}\n")
    auth = {"auth": {"htpasswd": {"realm": "upstream", "path": str(htpasswd)}}}
    with GoRegistry(work / "registry", extra=auth) as registry:
        yield Upstream(registry, push(Skopeo(work), registry, work / "layout"))


@pytest.fixture(scope="module")
def token_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    work = tmp_path_factory.mktemp("token-upstream")
    with TokenServer(work / "ts") as tokens:
        tokens.add_user(USER, PASSWORD)
        with GoRegistry(work / "registry", token=tokens.registry_auth()) as registry:
            yield Upstream(registry, push(Skopeo(work), registry, work / "layout"), tokens)


@pytest.fixture
def guard(leak_guard: LeakGuard) -> LeakGuard:
    leak_guard.add(PASSWORD)
    return leak_guard


async def pull_everything(client: UpstreamClient, image: ImageInfo) -> None:
    """Every read the client offers, each checked against what skopeo pushed."""
    by_tag = await client.get_manifest(NAME, "v1", [OCI_MANIFEST])
    assert by_tag.body == image.manifest
    assert by_tag.digest == image.manifest_digest and by_tag.media_type == OCI_MANIFEST
    by_digest = await client.get_manifest(NAME, image.manifest_digest, [OCI_MANIFEST])
    assert by_digest.body == image.manifest
    for reference in ("v1", image.manifest_digest):
        head = await client.head_manifest(NAME, reference, [OCI_MANIFEST])
        assert (head.digest, head.media_type, head.size) == (
            image.manifest_digest,
            OCI_MANIFEST,
            len(image.manifest),
        )
    for digest in [image.config_digest, *image.layer_digests]:
        async with client.open_blob(NAME, digest) as blob:
            hasher, size = hashlib.sha256(), 0
            async for chunk in blob.chunks():
                hasher.update(chunk)
                size += len(chunk)
        assert f"sha256:{hasher.hexdigest()}" == digest and blob.size == size


async def refused(client: UpstreamClient, error: type[UpstreamError], guard: LeakGuard) -> None:
    with pytest.raises(error) as caught:
        await client.get_manifest(NAME, "v1", [OCI_MANIFEST])
    assert guard.found_in(f"{caught.value} {caught.value!r}") == []


def test_basic_auth_pulls_byte_for_byte(basic_upstream: Upstream, guard: LeakGuard) -> None:
    async def run() -> None:
        client = UpstreamClient(
            basic_upstream.registry.url, username=USER, password=PASSWORD, timeout=10
        )
        try:
            await pull_everything(client, basic_upstream.image)
            with pytest.raises(UpstreamNotFound):
                await client.get_manifest(NAME, "v2", [OCI_MANIFEST])
            with pytest.raises(UpstreamNotFound):
                await client.get_manifest("puller/nothing", "v1", [OCI_MANIFEST])
            with pytest.raises(UpstreamNotFound):
                async with client.open_blob(NAME, "sha256:" + "0" * 64):
                    pass
        finally:
            await client.aclose()

    asyncio.run(run())


@pytest.mark.parametrize(
    "credentials",
    [(USER, "wrong-pw"), ("nobody", PASSWORD), None],
    ids=["password", "user", "none"],
)
def test_basic_auth_refuses_wrong_credentials(
    basic_upstream: Upstream, guard: LeakGuard, credentials: tuple[str, str] | None
) -> None:
    guard.add("wrong-pw")

    async def run() -> None:
        user, password = credentials or (None, None)
        client = UpstreamClient(
            basic_upstream.registry.url, username=user, password=password, timeout=10
        )
        try:
            await refused(client, UpstreamDenied, guard)
        finally:
            await client.aclose()

    asyncio.run(run())


def test_token_auth_pulls_with_one_token(token_upstream: Upstream, guard: LeakGuard) -> None:
    tokens = token_upstream.tokens
    assert tokens is not None
    offset = len(tokens.log_text())

    async def run() -> None:
        client = UpstreamClient(
            token_upstream.registry.url, username=USER, password=PASSWORD, timeout=10
        )
        try:
            await pull_everything(client, token_upstream.image)
            await asyncio.gather(
                *(client.get_manifest(NAME, "v1", [OCI_MANIFEST]) for _ in range(4))
            )
        finally:
            await client.aclose()

    asyncio.run(run())
    issued = tokens.issued_since(offset)
    assert len(issued) == 1, issued
    assert issued[0]["account"] == USER


def test_token_auth_refuses_a_wrong_password(token_upstream: Upstream, guard: LeakGuard) -> None:
    guard.add("wrong-pw")

    async def run() -> None:
        client = UpstreamClient(
            token_upstream.registry.url, username=USER, password="wrong-pw", timeout=10
        )
        try:
            await refused(client, UpstreamDenied, guard)
        finally:
            await client.aclose()

    asyncio.run(run())

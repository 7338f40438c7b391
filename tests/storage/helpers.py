"""Small builders shared by the storage tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

from registry_proxy.reference import Digest
from registry_proxy.storage import Storage, paths
from registry_proxy.storage.driver import FileNotFound, MultipartStore, StorageDriver
from registry_proxy.storage.schema import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST

__all__ = [
    "DOCKER_LIST",
    "DOCKER_MANIFEST",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "children",
    "collect",
    "descriptor",
    "image_manifest",
    "index_manifest",
    "push_blob",
    "push_image",
    "session_bytes",
    "stream",
]

CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


async def stream(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def children(driver: StorageDriver, path: str) -> list[str]:
    """`list`, where an emptied directory may be empty or gone (it is gone on S3)."""
    try:
        return await driver.list(path)
    except FileNotFound:
        return []


def descriptor(data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data), **extra}


def image_manifest(
    config: bytes,
    layers: Iterable[bytes],
    *,
    media_type: str | None = OCI_MANIFEST,
    config_type: str = CONFIG_TYPE,
    **extra: Any,
) -> bytes:
    doc: dict[str, Any] = {"schemaVersion": 2}
    if media_type is not None:
        doc["mediaType"] = media_type
    doc["config"] = descriptor(config, config_type)
    doc["layers"] = [descriptor(layer, LAYER_TYPE) for layer in layers]
    doc.update(extra)
    return json.dumps(doc, indent=3).encode()


def index_manifest(
    children: Iterable[bytes], *, media_type: str | None = OCI_INDEX, **extra: Any
) -> bytes:
    child_type = OCI_MANIFEST if media_type != DOCKER_LIST else DOCKER_MANIFEST
    doc: dict[str, Any] = {"schemaVersion": 2}
    if media_type is not None:
        doc["mediaType"] = media_type
    doc["manifests"] = [descriptor(child, child_type) for child in children]
    doc.update(extra)
    return json.dumps(doc).encode()


async def push_blob(storage: Storage, repo: str, data: bytes) -> Digest:
    digest = Digest.of(data)
    await storage.uploads.put(repo, digest, stream(data))
    return digest


async def push_image(
    storage: Storage, repo: str, tag: str | None, seed: bytes = b"x", **extra: Any
) -> tuple[bytes, Digest, list[Digest]]:
    """An image (config + two layers) pushed to `repo`; (manifest, its digest, blob digests)."""
    config = b'{"architecture":"amd64","seed":"' + seed + b'"}'
    layers = [b"layer-one-" + seed, b"layer-two-" + seed]
    blobs = [await push_blob(storage, repo, data) for data in (config, *layers)]
    body = image_manifest(config, layers, **extra)
    digest = Digest.of(body)
    await storage.manifests.put(repo, tag or str(digest), body, OCI_MANIFEST)
    return body, digest, blobs


async def session_bytes(driver: StorageDriver, repo: str, upload_id: str) -> bytes:
    """What an upload session holds so far: its data file, or on a multipart store (for a
    session shorter than a part) the tail kept in its session object."""
    if isinstance(driver, MultipartStore):
        record = await driver.get_content(paths.upload_session(repo, upload_id))
        return record.partition(b"\n")[2]
    return await driver.get_content(paths.upload_data(repo, upload_id))

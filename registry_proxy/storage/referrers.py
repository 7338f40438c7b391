"""The referrers index: `_referrers/<alg>/<subject hex>/<alg>/<referrer hex>/link`.

Ours alone (the Go registry skips `_`-prefixed directories); entries whose
manifest is gone are ignored, so a stale entry is harmless.
"""

from __future__ import annotations

import builtins
import contextlib
from typing import Any

from registry_proxy.reference import Digest
from registry_proxy.storage import paths
from registry_proxy.storage.driver import FileNotFound, StorageDriver
from registry_proxy.storage.errors import ManifestInvalid
from registry_proxy.storage.links import read_link, write_link
from registry_proxy.storage.revisions import read_revision
from registry_proxy.storage.schema import decode, parse, stored_media_type

__all__ = ["Referrers"]


class Referrers:
    def __init__(self, driver: StorageDriver) -> None:
        self._driver = driver

    async def add(self, repo: str, subject: Digest, referrer: Digest) -> None:
        await write_link(self._driver, paths.referrer_link(repo, subject, referrer), referrer)

    async def remove(self, repo: str, subject: Digest, referrer: Digest) -> None:
        with contextlib.suppress(FileNotFound):
            await self._driver.delete(paths.referrer_dir(repo, subject, referrer))

    async def list(
        self, repo: str, digest: Digest, artifact_type: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """OCI descriptors of the manifests in `repo` whose subject is `digest`, by digest."""
        base = paths.referrers_of(repo, digest)
        descriptors = []
        for referrer in await self._entries(base):
            descriptor = await self._descriptor(repo, referrer)
            if descriptor is None:
                continue
            if artifact_type is not None and descriptor.get("artifactType") != artifact_type:
                continue
            descriptors.append(descriptor)
        return sorted(descriptors, key=lambda d: str(d["digest"]))

    async def _entries(self, base: str) -> builtins.list[Digest]:
        found = []
        for algorithm in await self._children(base):
            for encoded in await self._children(f"{base}/{algorithm}"):
                digest = await read_link(self._driver, f"{base}/{algorithm}/{encoded}/link")
                if digest is not None:
                    found.append(digest)
        return found

    async def _children(self, path: str) -> builtins.list[str]:
        try:
            return await self._driver.list(path)
        except FileNotFound:
            return []

    async def _descriptor(self, repo: str, digest: Digest) -> dict[str, Any] | None:
        body = await read_revision(self._driver, repo, digest)
        if body is None:
            return None
        try:
            doc = decode(body)
            media_type = stored_media_type(doc)
            info = parse(doc, media_type)
        except ManifestInvalid:
            return None
        descriptor: dict[str, Any] = {
            "mediaType": media_type,
            "digest": str(digest),
            "size": len(body),
        }
        artifact_type = info.artifact_type
        if artifact_type is None and info.config is not None:
            artifact_type = info.config.media_type
        if artifact_type is not None:
            descriptor["artifactType"] = artifact_type
        if info.annotations:
            descriptor["annotations"] = info.annotations
        return descriptor

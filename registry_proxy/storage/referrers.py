"""The referrers index: `_referrers/<alg>/<subject hex>/<alg>/<referrer hex>/{descriptor,link}`.

Ours alone (the Go registry skips `_`-prefixed directories). A push stores
the referrer's descriptor beside its link, so listing reads a small file per
referrer, never the manifests themselves; entries whose manifest is gone are
passed over, so a stale entry is harmless. Lists come in pages bounded in
entries and bytes, and in what one page may read to find them.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
from dataclasses import dataclass
from typing import Any

from registry_proxy.reference import Digest, InvalidDigest
from registry_proxy.storage import paths
from registry_proxy.storage.driver import FileNotFound, StorageDriver
from registry_proxy.storage.errors import ManifestInvalid
from registry_proxy.storage.links import read_link, write_link
from registry_proxy.storage.revisions import read_revision
from registry_proxy.storage.schema import ManifestInfo, decode, parse, stored_media_type

__all__ = ["PAGE_BYTES", "PAGE_ENTRIES", "ReferrerPage", "Referrers", "describe"]

# A page holds at most this many descriptors and, past its first, this many bytes of them.
PAGE_ENTRIES = 100
PAGE_BYTES = 1024 * 1024
# What one page may read looking for descriptors an artifactType filter keeps.
SCAN_ENTRIES = 1000
SCAN_BYTES = 16 * 1024 * 1024
# A descriptor carries the manifest's annotations, so it is at most about a manifest's size.
MAX_DESCRIPTOR_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class ReferrerPage:
    # Each an OCI descriptor as JSON, ready to be sent.
    descriptors: builtins.list[bytes]
    # Set when more may follow: the next page lists the referrers after this digest.
    last: str | None = None


def describe(info: ManifestInfo, digest: Digest, size: int) -> bytes:
    """The OCI descriptor by which the referrers API lists a manifest."""
    descriptor: dict[str, Any] = {"mediaType": info.media_type, "digest": str(digest), "size": size}
    artifact_type = info.artifact_type
    if artifact_type is None and info.config is not None:
        artifact_type = info.config.media_type
    if artifact_type is not None:
        descriptor["artifactType"] = artifact_type
    if info.annotations:
        descriptor["annotations"] = info.annotations
    return json.dumps(descriptor, separators=(",", ":")).encode()


def _artifact_type(raw: bytes) -> object:
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc.get("artifactType") if isinstance(doc, dict) else None


def _describe_stored(body: bytes, digest: Digest) -> bytes | None:
    try:
        doc = decode(body)
        info = parse(doc, stored_media_type(doc))
    except ManifestInvalid:
        return None
    return describe(info, digest, len(body))


class Referrers:
    def __init__(self, driver: StorageDriver) -> None:
        self._driver = driver

    async def add(self, repo: str, subject: Digest, referrer: Digest, descriptor: bytes) -> None:
        # The descriptor first: a listed link then (nearly always) has one beside it.
        await self._driver.put_content(
            paths.referrer_descriptor(repo, subject, referrer), descriptor
        )
        await write_link(self._driver, paths.referrer_link(repo, subject, referrer), referrer)

    async def remove(self, repo: str, subject: Digest, referrer: Digest) -> None:
        with contextlib.suppress(FileNotFound):
            await self._driver.delete(paths.referrer_dir(repo, subject, referrer))

    async def page(
        self,
        repo: str,
        subject: Digest,
        artifact_type: str | None = None,
        after: str | None = None,
        *,
        entries_limit: int = PAGE_ENTRIES,
        bytes_limit: int = PAGE_BYTES,
        scan_limit: int = SCAN_ENTRIES,
    ) -> ReferrerPage:
        """Descriptors of the manifests in `repo` whose subject is `subject`, by digest,
        from just after `after`."""
        entries = [d for d in await self._entries(repo, subject) if after is None or str(d) > after]
        found: builtins.list[bytes] = []
        size = scanned = scanned_bytes = 0
        for index, referrer in enumerate(entries):
            if scanned >= scan_limit or scanned_bytes >= SCAN_BYTES:
                return ReferrerPage(found, str(entries[index - 1]))
            raw = await self._descriptor(repo, subject, referrer)
            scanned += 1
            if raw is None:
                continue
            scanned_bytes += len(raw)
            if artifact_type is not None:
                # Off the event loop: a descriptor holds annotations of any size.
                kind = await asyncio.to_thread(_artifact_type, raw)
                if kind != artifact_type:
                    continue
            if found and (len(found) >= entries_limit or size + len(raw) > bytes_limit):
                return ReferrerPage(found, str(entries[index - 1]))
            found.append(raw)
            size += len(raw)
        return ReferrerPage(found)

    async def list(
        self, repo: str, subject: Digest, artifact_type: str | None = None, **limits: int
    ) -> builtins.list[dict[str, Any]]:
        """Every page's descriptors, decoded (for tests and tools; the API serves pages)."""
        descriptors: builtins.list[dict[str, Any]] = []
        after = None
        while True:
            page = await self.page(repo, subject, artifact_type, after, **limits)
            descriptors.extend(json.loads(raw) for raw in page.descriptors)
            if page.last is None:
                return descriptors
            after = page.last

    async def _entries(self, repo: str, subject: Digest) -> builtins.list[Digest]:
        base = paths.referrers_of(repo, subject)
        found = []
        for algorithm in await self._children(base):
            for encoded in await self._children(f"{base}/{algorithm}"):
                with contextlib.suppress(InvalidDigest):
                    found.append(Digest.parse(f"{algorithm}:{encoded}"))
        return sorted(found, key=str)

    async def _children(self, path: str) -> builtins.list[str]:
        try:
            return await self._driver.list(path)
        except FileNotFound:
            return []

    async def _descriptor(self, repo: str, subject: Digest, referrer: Digest) -> bytes | None:
        """The stored descriptor, if the referrer is still a manifest of `repo`."""
        if await read_link(self._driver, paths.REVISIONS.link(repo, referrer)) != referrer:
            return None
        try:
            return await self._driver.get_content(
                paths.referrer_descriptor(repo, subject, referrer), MAX_DESCRIPTOR_BYTES
            )
        except FileNotFound:
            pass
        # An entry written before descriptors were stored: described from the manifest.
        if await read_link(self._driver, paths.referrer_link(repo, subject, referrer)) is None:
            return None
        body = await read_revision(self._driver, repo, referrer)
        if body is None:
            return None
        return await asyncio.to_thread(_describe_stored, body, referrer)

"""Manifests: validated on push, stored byte-exact as blobs, linked as repository revisions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from registry_proxy.reference import Digest, InvalidDigest, InvalidTag, check_tag, is_digest
from registry_proxy.storage import paths
from registry_proxy.storage.blobs import Blobs
from registry_proxy.storage.driver import FileNotFound, StorageDriver
from registry_proxy.storage.errors import (
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestTooLarge,
    ManifestUnknown,
    PathInvalid,
    StorageUnavailable,
)
from registry_proxy.storage.links import read_link, write_link
from registry_proxy.storage.referrers import Referrers, describe
from registry_proxy.storage.revisions import read_revision
from registry_proxy.storage.schema import (
    IMAGE_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    SUPPORTED_TYPES,
    Descriptor,
    ManifestInfo,
    decode,
    infer_media_type,
    parse,
    stored_media_type,
)
from registry_proxy.storage.tags import Tags
from registry_proxy.storage.validation import ManifestRules

__all__ = [
    "MAX_MANIFEST_SIZE",
    "Manifests",
    "PutResult",
    "StoredManifest",
    "served_media_type",
]

MAX_MANIFEST_SIZE = 4 * 1024 * 1024
# How often a push links its manifest again when concurrent deletes keep removing it.
LINK_ATTEMPTS = 8
# Content types clients send when they do not know better; they say nothing about the manifest.
_GENERIC_TYPES = frozenset(
    {
        "",
        "*/*",
        "application/json",
        "application/octet-stream",
        "application/x-www-form-urlencoded",
        "text/plain",
    }
)


@dataclass(frozen=True, slots=True)
class Manifests:
    driver: StorageDriver
    blobs: Blobs
    tags: Tags
    referrers: Referrers
    rules: ManifestRules

    async def put(
        self,
        repo: str,
        reference: str,
        body: bytes,
        content_type: str | None = None,
        tags: Sequence[str] = (),
        *,
        references_elsewhere: bool = False,
    ) -> PutResult:
        """Validate and store `body` byte-exact; tag it if `reference` is a tag, and with `tags`.

        Stored under the digest the client named (a `sha512:` one too), else
        under the sha256 of the bytes; every tag points at that digest.
        `references_elsewhere`: what it references need not be here (a manifest
        cached from an upstream registry, whose blobs come when first asked for).
        """
        if len(body) > MAX_MANIFEST_SIZE:
            raise ManifestTooLarge(MAX_MANIFEST_SIZE)
        tag, digest = _target(reference, body)
        for extra in tags:
            try:
                check_tag(extra)
            except InvalidTag:
                raise PathInvalid("invalid tag") from None
        applied = list(dict.fromkeys(([tag] if tag is not None else []) + list(tags)))
        doc = decode(body)
        if doc.get("schemaVersion") != 2:
            raise ManifestInvalid("schemaVersion must be 2")
        info = parse(doc, _media_type(doc, content_type))
        if not references_elsewhere:
            await self._check_references(repo, info)

        await self.blobs.put(digest, body)
        subject = info.subject.digest if info.subject is not None else None
        descriptor = describe(info, digest, len(body)) if subject is not None else b""
        revision = paths.REVISIONS.link(repo, digest)
        for _attempt in range(LINK_ATTEMPTS):
            await write_link(self.driver, revision, digest)
            if subject is not None:
                await self.referrers.add(repo, subject, digest, descriptor)
            for name in applied:
                await self.tags.tag(repo, name, digest)
            # A delete by digest (here or in another process) removes the revision,
            # then the tags it finds pointing at it. If it removed our revision
            # before it could see our tag, that tag would name nothing: link again.
            if await read_link(self.driver, revision) == digest:
                return PutResult(digest, subject)
        raise StorageUnavailable(
            f"manifest {digest} was deleted {LINK_ATTEMPTS} times while linking"
        )

    async def get(self, repo: str, reference: str) -> StoredManifest:
        if is_digest(reference):
            try:
                digest = Digest.parse(reference)
            except InvalidDigest:
                raise ManifestUnknown(reference) from None
        else:
            digest = await self.tags.resolve(repo, reference)
        body = await read_revision(self.driver, repo, digest)
        if body is None:
            raise ManifestUnknown(reference)
        return StoredManifest(body, served_media_type(body), digest)

    async def exists(self, repo: str, digest: Digest) -> bool:
        target = await read_link(self.driver, paths.REVISIONS.link(repo, digest))
        return target is not None and await self.blobs.stat(target) is not None

    async def delete(self, repo: str, digest: Digest) -> None:
        """Remove the revision, every tag currently pointing at it, and its referrers entry."""
        if await read_link(self.driver, paths.REVISIONS.link(repo, digest)) is None:
            raise ManifestUnknown(digest)
        subject = _subject_of(await read_revision(self.driver, repo, digest))
        try:
            await self.driver.delete(paths.REVISIONS.directory(repo, digest))
        except FileNotFound:
            raise ManifestUnknown(digest) from None
        for tag in await self.tags.pointing_at(repo, digest):
            with contextlib.suppress(ManifestUnknown):
                await self.tags.untag(repo, tag)
        if subject is not None:
            await self.referrers.remove(repo, subject, digest)

    async def delete_tag(self, repo: str, tag: str) -> None:
        await self.tags.untag(repo, tag)

    async def _check_references(self, repo: str, info: ManifestInfo) -> None:
        if info.media_type in IMAGE_TYPES:
            # Foreign layers may live elsewhere (their `urls`), if the rules allow those.
            needed = self.rules.stored_references(info.media_type, info.references())
            found = await asyncio.gather(*(self.blobs.linked(repo, d.digest) for d in needed))
            missing = [d for d, size in zip(needed, found, strict=True) if size is None]
        else:
            children: list[Descriptor] = self.rules.required_children(info.children)
            present = await asyncio.gather(*(self.exists(repo, d.digest) for d in children))
            missing = [d for d, ok in zip(children, present, strict=True) if not ok]
        if missing:
            raise ManifestBlobUnknown(missing[0].digest)


@dataclass(frozen=True, slots=True)
class PutResult:
    digest: Digest
    subject: Digest | None


@dataclass(frozen=True, slots=True)
class StoredManifest:
    body: bytes
    media_type: str
    digest: Digest


def served_media_type(body: bytes) -> str:
    """The media type a stored manifest is served with."""
    try:
        return stored_media_type(decode(body))
    except ManifestInvalid:
        return OCI_MANIFEST  # Served as stored; the Go registry's default guess.


def _target(reference: str, body: bytes) -> tuple[str | None, Digest]:
    """(tag or None, digest of `body`); the digest a client named must match the body."""
    if not is_digest(reference):
        try:
            check_tag(reference)
        except InvalidTag:
            raise PathInvalid("invalid tag") from None
        return reference, Digest.of(body)
    try:
        expected = Digest.parse(reference)
    except InvalidDigest as exc:
        raise DigestInvalid(f"invalid digest {reference[:100]}: {exc}") from None
    actual = Digest.of(body, expected.algorithm)
    if actual != expected:
        raise DigestInvalid(f"manifest has digest {actual}, not {expected}")
    return None, actual


def _media_type(doc: dict[str, Any], content_type: str | None) -> str:
    """The manifest's media type: its `mediaType` field, else the content type, else its shape.

    Without the field, what GET will later report is decided by the shape
    alone, so a push whose content type disagrees with the shape is refused.
    """
    declared = (content_type or "").split(";", 1)[0].strip().lower()
    declared_type = None if declared in _GENERIC_TYPES else declared
    field = doc.get("mediaType")
    if field is not None:
        if not isinstance(field, str):
            raise ManifestInvalid("mediaType must be a string")
        if declared_type is not None and declared_type != field:
            raise ManifestInvalid(f"mediaType {field[:100]} but Content-Type {declared[:100]}")
        media_type = field
    else:
        inferred = infer_media_type(doc)
        media_type = declared_type or inferred or ""
        if not media_type:
            raise ManifestInvalid("no mediaType, and neither an image manifest nor an index")
        if media_type in SUPPORTED_TYPES and media_type not in (OCI_MANIFEST, OCI_INDEX):
            raise ManifestInvalid(f"a {media_type} manifest needs its mediaType field")
        if media_type in SUPPORTED_TYPES and media_type != inferred:
            raise ManifestInvalid(f"content does not have the shape of {media_type}")
    if media_type not in SUPPORTED_TYPES:
        raise ManifestInvalid(f"unsupported manifest media type {media_type[:100]!r}")
    return media_type


def _subject_of(body: bytes | None) -> Digest | None:
    if body is None:
        return None
    try:
        doc = decode(body)
        info = parse(doc, stored_media_type(doc))
    except ManifestInvalid:
        return None
    return info.subject.digest if info.subject is not None else None

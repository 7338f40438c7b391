"""Mark and sweep: delete blobs that no manifest revision of any repository references.

Run it with the registry stopped or read-only, as with the Go registry's
garbage-collect: a blob pushed during the sweep is not yet referenced.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from registry_proxy.reference import Digest, InvalidDigest
from registry_proxy.storage import paths
from registry_proxy.storage.catalog import walk_repositories
from registry_proxy.storage.driver import FileNotFound, StorageDriver
from registry_proxy.storage.errors import ManifestUnknown, NameUnknown
from registry_proxy.storage.revisions import children, list_revisions, read_revision
from registry_proxy.storage.schema import ManifestInfo, decode, parse, stored_media_type

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from registry_proxy.storage import Storage

__all__ = ["GCReport", "collect"]

# Any directory with manifests can reference blobs, even one the catalog would not list.
_REPOSITORY_MARKERS = frozenset({"_layers", "_manifests"})


@dataclass(frozen=True, slots=True)
class GCReport:
    """Counts; in a dry run, `swept`, `bytes_freed` and `manifests_deleted` are what would be."""

    marked: int
    swept: int
    bytes_freed: int
    manifests_deleted: int


def _quiet(_line: str) -> None:
    return None


async def collect(
    storage: Storage,
    dry_run: bool = False,
    delete_untagged: bool = False,
    progress: Callable[[str], None] = _quiet,
) -> GCReport:
    driver = storage.driver
    marked: set[Digest] = set()
    doomed: list[tuple[str, Digest]] = []
    async with contextlib.aclosing(walk_repositories(driver, _REPOSITORY_MARKERS)) as repos:
        async for repo in repos:
            manifests = await _read_manifests(driver, repo, progress)
            keep = set(manifests)
            if delete_untagged:
                keep = await _kept(storage, repo, manifests)
                for digest in sorted(set(manifests) - keep, key=str):
                    progress(f"{repo}: manifest eligible for deletion: {digest}")
                    doomed.append((repo, digest))
            for digest in keep:
                progress(f"{repo}: marking manifest {digest}")
                marked.add(digest)
                marked.update(ref.digest for ref in manifests[digest].references())

    if not dry_run:
        for repo, digest in doomed:
            with contextlib.suppress(ManifestUnknown):
                await storage.manifests.delete(repo, digest)

    swept = freed = 0
    async for digest, size in _stored_blobs(driver):
        if digest in marked:
            continue
        progress(f"blob eligible for deletion: {digest}")
        swept += 1
        freed += size
        if not dry_run:
            with contextlib.suppress(FileNotFound):
                await driver.delete(paths.blob_dir(digest))
    # The summary is the caller's to print, from the report: said once.
    return GCReport(len(marked), swept, freed, len(doomed))


async def _read_manifests(
    driver: StorageDriver, repo: str, progress: Callable[[str], None]
) -> dict[Digest, ManifestInfo]:
    """Every readable revision of `repo`; a manifest that does not parse stops the collection."""
    manifests = {}
    for digest in await list_revisions(driver, repo):
        body = await read_revision(driver, repo, digest)
        if body is None:
            progress(f"{repo}: manifest {digest} has no stored blob; skipped")
            continue
        # Deliberately unguarded: without knowing what it references, sweeping could lose data.
        doc = decode(body)
        manifests[digest] = parse(doc, stored_media_type(doc))
    return manifests


async def _kept(storage: Storage, repo: str, manifests: dict[Digest, ManifestInfo]) -> set[Digest]:
    """Tagged manifests, their index children, and referrers of anything kept."""
    try:
        tags = await storage.tags.list(repo)
    except NameUnknown:
        tags = []
    pending: list[Digest] = []
    for tag in tags:
        with contextlib.suppress(ManifestUnknown):
            pending.append(await storage.tags.resolve(repo, tag))
    keep: set[Digest] = set()
    while pending:
        digest = pending.pop()
        if digest in keep or digest not in manifests:
            continue
        keep.add(digest)
        pending.extend(child.digest for child in manifests[digest].children)
        pending.extend(
            other
            for other, info in manifests.items()
            if info.subject is not None and info.subject.digest == digest
        )
    return keep


async def _stored_blobs(driver: StorageDriver) -> AsyncIterator[tuple[Digest, int]]:
    for algorithm in await children(driver, paths.BLOBS):
        for prefix in await children(driver, f"{paths.BLOBS}/{algorithm}"):
            for encoded in await children(driver, f"{paths.BLOBS}/{algorithm}/{prefix}"):
                try:
                    digest = Digest.parse(f"{algorithm}:{encoded}")
                except InvalidDigest:
                    continue
                try:
                    info = await driver.stat(paths.blob_data(digest))
                except FileNotFound:
                    continue
                yield digest, info.size

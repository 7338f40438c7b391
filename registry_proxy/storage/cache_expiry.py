"""Upstream content cached here, removed by `registry-proxy gc` before its sweep: what was
cached longer ago than its upstream's `ttl`, then, while the upstreams' blobs add up to
more than `storage.proxycache.max_bytes`, what was used least recently.

The unit is a manifest revision of an upstream's repository with the layers of that
repository it references (an image goes whole: a layer its manifest still references
would never be swept), or a layer no manifest there references. It was cached when its
link was written, and last used at the latest of that and its parts' use records
(`cache_uses`). Removing a unit deletes its revision (and the tags pointing at it) and
unlinks its layers that no kept unit of the repository holds; the sweep then deletes the
blobs nothing references any more, never one a local repository's manifest names. The
bytes counted are those of blobs no upstream repository holds any more.

Nothing is locked: two collections at once delete the same things (deleting what is gone
is nothing), and a pull meanwhile finds the content or fetches it again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from registry_proxy.reference import Digest
from registry_proxy.storage import paths
from registry_proxy.storage.cache_uses import LAYER, MANIFEST, last_used
from registry_proxy.storage.catalog import walk_repositories
from registry_proxy.storage.driver import FileNotFound, StorageDriver
from registry_proxy.storage.errors import ManifestInvalid, ManifestUnknown
from registry_proxy.storage.links import read_link
from registry_proxy.storage.revisions import digests_below, list_links, read_revision
from registry_proxy.storage.schema import decode, parse, stored_media_type

if TYPE_CHECKING:
    from registry_proxy.storage import Storage

__all__ = ["CacheReport", "CachedNames", "Removed", "expire_and_evict"]

_MARKERS = frozenset({LAYER, MANIFEST})


class CachedNames(Protocol):
    """Which repositories hold an upstream's content, and how long it is kept."""

    def owns(self, name: str) -> bool: ...

    def ttl(self, name: str) -> dt.timedelta | None:
        """How long content of an owned repository is kept after it was cached; None: ever."""
        ...


@dataclass(frozen=True, slots=True)
class Removed:
    manifests: int = 0
    layers: int = 0
    # Of blobs no upstream repository holds any more: the sweep frees them unless a
    # local repository references them.
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class CacheReport:
    """What was removed; in a dry run, what would be."""

    expired: Removed
    evicted: Removed


@dataclass(frozen=True, slots=True)
class _Unit:
    repo: str
    manifest: Digest | None
    layers: frozenset[Digest]
    cached_at: dt.datetime
    used_at: dt.datetime

    @property
    def digests(self) -> frozenset[Digest]:
        return self.layers | {self.manifest} if self.manifest is not None else self.layers

    def order(self) -> tuple[dt.datetime, str, str]:
        first = self.manifest or min(self.layers, key=str)
        return self.used_at, self.repo, str(first)


def _quiet(_line: str) -> None:
    return None


async def expire_and_evict(
    storage: Storage,
    names: CachedNames,
    max_bytes: int | None,
    now: dt.datetime,
    *,
    dry_run: bool = False,
    progress: Callable[[str], None] = _quiet,
) -> CacheReport:
    driver = storage.driver
    units: list[_Unit] = []
    async with contextlib.aclosing(walk_repositories(driver, _MARKERS)) as repos:
        async for repo in repos:
            if names.owns(repo):
                units.extend(await _units(driver, repo, now))
    held = Counter(d for unit in units for d in unit.digests)
    sizes = {d: await storage.blobs.stat(d) or 0 for d in held}

    def drop(unit: _Unit) -> int:
        held.subtract(unit.digests)
        return sum(sizes[d] for d in unit.digests if held[d] == 0)

    expired: list[_Unit] = []
    expired_bytes = 0
    for unit in units:
        ttl = names.ttl(unit.repo)
        if ttl is not None and now - unit.cached_at >= ttl:
            expired.append(unit)
            expired_bytes += drop(unit)
    evicted: list[_Unit] = []
    evicted_bytes = 0
    gone = {id(unit) for unit in expired}
    if max_bytes is not None:
        total = sum(sizes[d] for d, count in held.items() if count > 0)
        for unit in sorted((u for u in units if id(u) not in gone), key=_Unit.order):
            if total <= max_bytes:
                break
            evicted.append(unit)
            gone.add(id(unit))
            freed = drop(unit)
            total -= freed
            evicted_bytes += freed
    kept = [unit for unit in units if id(unit) not in gone]
    counted = [
        await _remove(storage, list(group), kept, dry_run, progress, why)
        for group, why in ((expired, "expired"), (evicted, "evicted"))
    ]
    if not dry_run:
        await _forget_unlinked(driver)
    return CacheReport(
        Removed(*counted[0], bytes=expired_bytes), Removed(*counted[1], bytes=evicted_bytes)
    )


async def _units(driver: StorageDriver, repo: str, now: dt.datetime) -> list[_Unit]:
    layers = {}
    for digest in await list_links(driver, paths.LAYERS, repo):
        times = await _times(driver, repo, LAYER, digest, now)
        if times is not None:
            layers[digest] = times
    units = []
    referenced: set[Digest] = set()
    for digest in await list_links(driver, paths.REVISIONS, repo):
        times = await _times(driver, repo, MANIFEST, digest, now)
        if times is None:
            continue
        parts = _references(await read_revision(driver, repo, digest)) & layers.keys()
        referenced |= parts
        used = max([times[1], *(layers[d][1] for d in parts)])
        units.append(_Unit(repo, digest, frozenset(parts), times[0], used))
    for digest, (cached, used) in layers.items():
        if digest not in referenced:
            units.append(_Unit(repo, None, frozenset({digest}), cached, used))
    return units


async def _times(
    driver: StorageDriver, repo: str, kind: str, digest: Digest, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime] | None:
    """(cached, last used) of one layer or revision; None if its link went meanwhile."""
    tree = paths.LAYERS if kind == LAYER else paths.REVISIONS
    try:
        cached = min((await driver.stat(tree.link(repo, digest))).modified, now)
    except FileNotFound:
        return None
    used = await last_used(driver, repo, kind, digest)
    # A record from the future (a skewed clock, a forged file) is no use later than now.
    return cached, max(cached, min(used, now)) if used is not None else cached


def _references(body: bytes | None) -> set[Digest]:
    if body is None:
        return set()
    try:
        doc = decode(body)
        return {ref.digest for ref in parse(doc, stored_media_type(doc)).references()}
    except ManifestInvalid:
        # Its layers then go by themselves; the sweep says what it makes of the manifest.
        return set()


async def _remove(
    storage: Storage,
    removed: list[_Unit],
    kept: Iterable[_Unit],
    dry_run: bool,
    progress: Callable[[str], None],
    why: str,
) -> tuple[int, int]:
    """Delete the units' revisions and unlink their layers no kept unit holds: the counts."""
    driver = storage.driver
    still = {(unit.repo, d) for unit in kept for d in unit.layers}
    manifests = layers = 0
    for unit in removed:
        if unit.manifest is not None:
            progress(f"{unit.repo}: manifest {why}: {unit.manifest}")
            manifests += 1
            if not dry_run:
                with contextlib.suppress(ManifestUnknown):
                    await storage.manifests.delete(unit.repo, unit.manifest)
                await _delete(driver, paths.proxycache_dir(unit.repo, MANIFEST, unit.manifest))
        for digest in sorted(unit.layers, key=str):
            if (unit.repo, digest) in still:
                continue
            still.add((unit.repo, digest))  # counted once, however many units held it
            progress(f"{unit.repo}: layer {why}: {digest}")
            layers += 1
            if not dry_run:
                await _delete(driver, paths.LAYERS.directory(unit.repo, digest))
                await _delete(driver, paths.proxycache_dir(unit.repo, LAYER, digest))
    return manifests, layers


async def _forget_unlinked(driver: StorageDriver) -> None:
    """Delete use records whose layer or revision is gone (left by a collection killed
    between the two deletes, or by content deleted otherwise)."""
    walk = walk_repositories(driver, _MARKERS, root=paths.PROXYCACHE)
    async with contextlib.aclosing(walk) as repos:
        async for repo in repos:
            for kind, tree in ((LAYER, paths.LAYERS), (MANIFEST, paths.REVISIONS)):
                for digest in await digests_below(driver, f"{paths.PROXYCACHE}/{repo}/{kind}"):
                    if await read_link(driver, tree.link(repo, digest)) != digest:
                        await _delete(driver, paths.proxycache_dir(repo, kind, digest))


async def _delete(driver: StorageDriver, path: str) -> None:
    with contextlib.suppress(FileNotFound):
        await driver.delete(path)

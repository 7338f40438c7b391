"""Reading a repository's manifest revisions: the revision link, then the blob it names."""

from __future__ import annotations

from registry_proxy.reference import Digest, InvalidDigest
from registry_proxy.storage import paths
from registry_proxy.storage.driver import FileNotFound, StorageDriver
from registry_proxy.storage.links import read_link

__all__ = ["MAX_STORED_MANIFEST_SIZE", "list_revisions", "read_revision"]

# Larger than what we accept on push, so whatever an older registry stored still reads back.
MAX_STORED_MANIFEST_SIZE = 16 * 1024 * 1024


async def read_revision(driver: StorageDriver, repo: str, digest: Digest) -> bytes | None:
    """The manifest bytes if `digest` is a revision of `repo` and its blob is stored."""
    target = await read_link(driver, paths.REVISIONS.link(repo, digest))
    if target is None:
        return None
    try:
        return await driver.get_content(paths.blob_data(target), MAX_STORED_MANIFEST_SIZE)
    except FileNotFound:
        return None


async def list_revisions(driver: StorageDriver, repo: str) -> list[Digest]:
    """Every manifest revision linked in `repo` (whether or not its blob is still stored)."""
    root = paths.REVISIONS.root(repo)
    found: list[Digest] = []
    for algorithm in await _children(driver, root):
        for encoded in await _children(driver, f"{root}/{algorithm}"):
            try:
                candidate = Digest.parse(f"{algorithm}:{encoded}")
            except InvalidDigest:
                continue
            target = await read_link(driver, paths.REVISIONS.link(repo, candidate))
            if target is not None and target == candidate:
                found.append(target)
    return found


async def _children(driver: StorageDriver, path: str) -> list[str]:
    try:
        return await driver.list(path)
    except FileNotFound:
        return []

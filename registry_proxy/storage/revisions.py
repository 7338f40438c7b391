"""Reading a repository's manifest revisions: the revision link, then the blob it names."""

from __future__ import annotations

from registry_proxy.reference import Digest, InvalidDigest
from registry_proxy.storage import paths
from registry_proxy.storage.driver import FileNotFound, StorageDriver
from registry_proxy.storage.links import read_link

__all__ = [
    "MAX_STORED_MANIFEST_SIZE",
    "children",
    "digests_below",
    "list_links",
    "list_revisions",
    "read_revision",
]

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
    return await list_links(driver, paths.REVISIONS, repo)


async def list_links(driver: StorageDriver, tree: paths.DigestLinks, repo: str) -> list[Digest]:
    """Every digest `tree` (layers or revisions) of `repo` links to itself."""
    found: list[Digest] = []
    for candidate in await digests_below(driver, tree.root(repo)):
        if await read_link(driver, tree.link(repo, candidate)) == candidate:
            found.append(candidate)
    return found


async def digests_below(driver: StorageDriver, root: str) -> list[Digest]:
    """The digests named by `<root>/<alg>/<hex>` directories (other names are passed over)."""
    found: list[Digest] = []
    for algorithm in await children(driver, root):
        for encoded in await children(driver, f"{root}/{algorithm}"):
            try:
                found.append(Digest.parse(f"{algorithm}:{encoded}"))
            except InvalidDigest:
                continue
    return found


async def children(driver: StorageDriver, path: str) -> list[str]:
    """A directory's children; none if it is missing (or emptied away on an object store)."""
    try:
        return await driver.list(path)
    except FileNotFound:
        return []

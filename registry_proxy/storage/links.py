"""Link files: a digest string, no newline, as the Go registry writes them."""

from __future__ import annotations

from registry_proxy.reference import Digest, InvalidDigest
from registry_proxy.storage.driver import FileNotFound, StorageDriver, TooLarge

__all__ = ["exists", "read_link", "write_link"]

_MAX_LINK_SIZE = 1024


async def read_link(driver: StorageDriver, path: str) -> Digest | None:
    """The digest a link names; None if there is no link (or it holds no digest)."""
    try:
        content = await driver.get_content(path, _MAX_LINK_SIZE)
        return Digest.parse(content.decode("ascii").strip())
    except (FileNotFound, TooLarge, InvalidDigest, UnicodeDecodeError):
        return None


async def write_link(driver: StorageDriver, path: str, digest: Digest) -> None:
    await driver.put_content(path, str(digest).encode("ascii"))


async def exists(driver: StorageDriver, path: str) -> bool:
    try:
        await driver.stat(path)
    except FileNotFound:
        return False
    return True

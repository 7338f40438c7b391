"""Tags: `_manifests/tags/<tag>/current/link` names the manifest, `index/` keeps its history."""

from __future__ import annotations

import builtins
import datetime as dt

from registry_proxy.reference import Digest, is_tag
from registry_proxy.storage import paths
from registry_proxy.storage.driver import FileNotFound, StorageDriver
from registry_proxy.storage.errors import ManifestUnknown, NameUnknown
from registry_proxy.storage.links import exists, read_link, write_link

__all__ = ["Tags"]


class Tags:
    def __init__(self, driver: StorageDriver) -> None:
        self._driver = driver

    async def list(self, repo: str) -> builtins.list[str]:
        """All tags of `repo`, sorted; `NameUnknown` if there is no such repository."""
        try:
            names = await self._driver.list(paths.tags(repo))
        except FileNotFound:
            if await self.repository_exists(repo):
                return []
            raise NameUnknown(repo) from None
        return sorted(name for name in names if is_tag(name))

    async def repository_exists(self, repo: str) -> bool:
        return await exists(self._driver, paths.LAYERS.root(repo)) or await exists(
            self._driver, paths.manifests_dir(repo)
        )

    async def resolve(self, repo: str, tag: str) -> Digest:
        """The manifest digest `tag` points at; `ManifestUnknown` if it is not a tag of `repo`."""
        digest = await read_link(self._driver, paths.tag_current_link(repo, tag))
        if digest is None:
            raise ManifestUnknown(tag)
        return digest

    async def resolve_with_time(self, repo: str, tag: str) -> tuple[Digest, dt.datetime] | None:
        """The digest `tag` points at and when it was last pointed (at that or another
        digest: `tag` rewrites the link each time); None if it is not a tag of `repo`."""
        path = paths.tag_current_link(repo, tag)
        digest = await read_link(self._driver, path)
        if digest is None:
            return None
        try:
            return digest, (await self._driver.stat(path)).modified
        except FileNotFound:  # untagged in between
            return None

    async def tag(self, repo: str, tag: str, digest: Digest) -> None:
        """Point `tag` at `digest` (which the caller has checked is a revision of `repo`)."""
        # Index entry first, then the current link, as the Go registry does.
        await write_link(self._driver, paths.tag_index_link(repo, tag, digest), digest)
        await write_link(self._driver, paths.tag_current_link(repo, tag), digest)

    async def untag(self, repo: str, tag: str) -> None:
        # The current link goes first. A tag is listed while anything is left of
        # its directory, and `tag` writes the index entry before the current
        # link; where deleting a directory is not atomic (S3), a `tag` racing
        # this can then only leave both links or neither, never an index entry
        # that lists a tag which no longer resolves.
        had_current = True
        try:
            await self._driver.delete(paths.tag_current_link(repo, tag))
        except FileNotFound:
            had_current = False
        try:
            await self._driver.delete(paths.tag_dir(repo, tag))
        except FileNotFound:
            if not had_current:
                raise ManifestUnknown(tag) from None

    async def pointing_at(self, repo: str, digest: Digest) -> builtins.list[str]:
        """The tags whose current link names `digest`."""
        try:
            names = await self.list(repo)
        except NameUnknown:
            return []
        found = []
        for name in names:
            if await read_link(self._driver, paths.tag_current_link(repo, name)) == digest:
                found.append(name)
        return found

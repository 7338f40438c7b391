"""The repository catalog: a depth-first walk of `repositories/`, in component-wise order.

A repository is a directory holding `_layers` (as the Go registry decides);
`_`-prefixed directories are never descended into. Listing children sorted
at every level yields names ordered as if '/' sorted before every other
character, so `a/b` comes before `a-b`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Collection

from registry_proxy.reference import is_name
from registry_proxy.storage import paths
from registry_proxy.storage.driver import FileNotFound, StorageDriver

__all__ = ["Catalog", "walk_repositories"]

CATALOG_MARKERS = frozenset({"_layers"})


class Catalog:
    def __init__(self, driver: StorageDriver) -> None:
        self._driver = driver

    async def list(self, n: int | None = None, last: str | None = None) -> tuple[list[str], bool]:
        """Up to `n` repository names (all if None) after `last`, and whether more follow."""
        if n is not None and n <= 0:
            return [], False
        names: list[str] = []
        walk = walk_repositories(self._driver, CATALOG_MARKERS, after=last or None)
        async with contextlib.aclosing(walk) as repositories:
            async for name in repositories:
                if n is not None and len(names) == n:
                    return names, True
                names.append(name)
        return names, False


async def walk_repositories(
    driver: StorageDriver,
    markers: Collection[str],
    after: str | None = None,
    root: str = paths.REPOSITORIES,
) -> AsyncGenerator[str, None]:
    """Repository names in catalog order, strictly after `after` if given.

    A directory counts as a repository when it holds one of `markers`. `root`: another
    tree laid out by repository name (the cache's bookkeeping).
    """
    bound = tuple(after.split("/")) if after is not None else None
    try:
        children = await driver.list(root)
    except FileNotFound:
        return
    walk = _walk(driver, root, (), children, markers, bound)
    async with contextlib.aclosing(walk) as names:
        async for name in names:
            yield name


async def _walk(
    driver: StorageDriver,
    root: str,
    prefix: tuple[str, ...],
    children: list[str],
    markers: Collection[str],
    bound: tuple[str, ...] | None,
) -> AsyncGenerator[str, None]:
    if prefix and any(marker in children for marker in markers):
        name = "/".join(prefix)
        if (bound is None or prefix > bound) and is_name(name):
            yield name
    for child in children:
        if child.startswith(("_", ".")):
            continue
        path = (*prefix, child)
        # Every repository below `path` starts with `path`; skip subtrees wholly before `bound`.
        if bound is not None and path < bound[: len(path)]:
            continue
        try:
            grandchildren = await driver.list(f"{root}/{'/'.join(path)}")
        except FileNotFound:
            continue  # A file, or removed while we walk.
        async with contextlib.aclosing(
            _walk(driver, root, path, grandchildren, markers, bound)
        ) as names:
            async for name in names:
                yield name

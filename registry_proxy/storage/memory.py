"""An in-process storage driver for tests: a tree of dicts, same semantics as the filesystem."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field

from registry_proxy.storage.driver import (
    CHUNK_SIZE,
    MAX_CONTENT_SIZE,
    Feed,
    FileInfo,
    FileNotFound,
    TooLarge,
    split_path,
)
from registry_proxy.storage.errors import StorageUnavailable

__all__ = ["MemoryDriver"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class _File:
    data: bytearray = field(default_factory=bytearray)
    modified: dt.datetime = field(default_factory=_now)


@dataclass
class _Dir:
    children: dict[str, _File | _Dir] = field(default_factory=dict)
    modified: dt.datetime = field(default_factory=_now)


class _MemoryAppender:
    def __init__(self, node: _File) -> None:
        self._node = node

    @property
    def size(self) -> int:
        return len(self._node.data)

    async def write(self, pieces: Sequence[bytes], feed: Feed | None = None) -> None:
        if isinstance(pieces, bytes | bytearray | memoryview):
            raise TypeError("write takes a sequence of pieces, not one buffer")
        for piece in pieces:
            self._node.data += piece
            if feed is not None:
                feed(piece)
        self._node.modified = _now()

    async def close(self, *, sync: bool = False) -> None:
        return None


class MemoryDriver:
    # Every method finishes its mutation without awaiting, so each is atomic
    # with respect to the event loop.

    def __init__(self) -> None:
        self._root = _Dir()

    def _find(self, path: str, *, allow_root: bool = False) -> _File | _Dir:
        node: _File | _Dir = self._root
        for part in split_path(path, allow_root=allow_root):
            if not isinstance(node, _Dir) or part not in node.children:
                raise FileNotFound(path)
            node = node.children[part]
        return node

    def _file(self, path: str) -> _File:
        node = self._find(path)
        if not isinstance(node, _File):
            raise FileNotFound(path)
        return node

    def _parent(self, path: str, *, create: bool) -> tuple[_Dir, str]:
        *parents, name = split_path(path)
        node = self._root
        for part in parents:
            child = node.children.get(part)
            if child is None:
                if not create:
                    raise FileNotFound(path)
                child = node.children[part] = _Dir()
            if not isinstance(child, _Dir):
                raise StorageUnavailable(f"{path}: not a directory")
            node = child
        return node, name

    async def get_content(self, path: str, max_size: int = MAX_CONTENT_SIZE) -> bytes:
        node = self._file(path)
        if len(node.data) > max_size:
            raise TooLarge(path, max_size)
        return bytes(node.data)

    async def put_content(self, path: str, data: bytes) -> None:
        parent, name = self._parent(path, create=True)
        if isinstance(parent.children.get(name), _Dir):
            raise StorageUnavailable(f"{path}: is a directory")
        parent.children[name] = _File(bytearray(data))

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> AsyncGenerator[bytes, None]:
        node = self._file(path)
        position = offset
        end = None if length is None else offset + length
        while True:
            stop = position + chunk_size if end is None else min(position + chunk_size, end)
            data = bytes(node.data[position:stop])
            if not data:
                return
            position += len(data)
            yield data
            await asyncio.sleep(0)

    async def stat(self, path: str) -> FileInfo:
        node = self._find(path, allow_root=True)
        if isinstance(node, _Dir):
            return FileInfo(path=path, size=0, modified=node.modified, is_dir=True)
        return FileInfo(path=path, size=len(node.data), modified=node.modified, is_dir=False)

    async def list(self, path: str) -> list[str]:
        node = self._find(path, allow_root=True)
        if not isinstance(node, _Dir):
            raise FileNotFound(path)
        return sorted(node.children)

    async def move(self, src: str, dst: str) -> None:
        node = self._find(src)
        source_parent, source_name = self._parent(src, create=False)
        target_parent, target_name = self._parent(dst, create=True)
        del source_parent.children[source_name]
        target_parent.children[target_name] = node

    async def delete(self, path: str) -> None:
        self._find(path)
        parent, name = self._parent(path, create=False)
        del parent.children[name]

    async def redirect_url(self, path: str, expires_in: int) -> str | None:
        return None  # only the registry can serve these bytes

    async def open_append(self, path: str) -> _MemoryAppender:
        parent, name = self._parent(path, create=True)
        node = parent.children.get(name)
        if isinstance(node, _Dir):
            raise StorageUnavailable(f"{path}: is a directory")
        if node is None:
            node = parent.children[name] = _File()
        return _MemoryAppender(node)

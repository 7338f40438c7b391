"""What a blob GET asks of the store: the whole object unless the client asked for a range.

A store may serve a whole object faster than a range of it (Swift does, for a
multipart object), so a plain GET must not turn into a range request.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator

import pytest
from starlette.testclient import TestClient

from registry_proxy.storage.driver import CHUNK_SIZE
from registry_proxy.storage.filesystem import FilesystemDriver
from tests.registry.conftest import Mint

DATA = bytes(range(256)) * 4096  # 1 MiB: several reads' worth at most
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int | None]]:
    """(offset, length) of every blob read the driver is asked for."""
    asked: list[tuple[int, int | None]] = []
    original = FilesystemDriver.reader

    def reader(
        self: FilesystemDriver,
        path: str,
        offset: int = 0,
        length: int | None = None,
        chunk_size: int = CHUNK_SIZE,
    ) -> AsyncGenerator[bytes, None]:
        if path.endswith("/data") and "/blobs/" in path:
            asked.append((offset, length))
        return original(self, path, offset, length, chunk_size)

    monkeypatch.setattr(FilesystemDriver, "reader", reader)
    return asked


def test_a_plain_get_reads_the_whole_object_and_a_range_only_its_bytes(
    registry: TestClient, mint: Mint, reads: list[tuple[int, int | None]]
) -> None:
    auth = mint("repository:team/app:pull,push")
    pushed = registry.post(
        "/v2/team/app/blobs/uploads/", params={"digest": DIGEST}, content=DATA, headers=auth
    )
    assert pushed.status_code == 201
    reads.clear()

    whole = registry.get(f"/v2/team/app/blobs/{DIGEST}", headers=auth)
    assert whole.status_code == 200 and whole.content == DATA
    assert whole.headers["content-length"] == str(len(DATA))
    assert reads == [(0, None)]

    reads.clear()
    part = registry.get(f"/v2/team/app/blobs/{DIGEST}", headers={**auth, "Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == DATA[10:20]
    assert reads == [(10, 10)]

    reads.clear()
    # A range that is the whole blob is still what the client asked for.
    full_range = registry.get(
        f"/v2/team/app/blobs/{DIGEST}", headers={**auth, "Range": f"bytes=0-{len(DATA) - 1}"}
    )
    assert full_range.status_code == 206 and full_range.content == DATA
    assert reads == [(0, len(DATA))]

"""Fixtures for the storage tests: every driver-level test runs against both drivers."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry_proxy.storage import Storage
from registry_proxy.storage.driver import StorageDriver
from registry_proxy.storage.filesystem import FilesystemDriver
from registry_proxy.storage.memory import MemoryDriver


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture(params=["filesystem", "memory"])
def driver(request: pytest.FixtureRequest, root: Path) -> StorageDriver:
    if request.param == "filesystem":
        return FilesystemDriver(root)
    return MemoryDriver()


@pytest.fixture
def storage(driver: StorageDriver) -> Storage:
    return Storage(driver)

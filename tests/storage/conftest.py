"""Fixtures for the storage tests: every driver-level test runs against every driver.

`s3` is a fresh bucket on the session's real Swift for each test (its
`rootdirectory` set, as a deployment sharing a bucket would), so those runs
are end-to-end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from registry_proxy.storage import Storage
from registry_proxy.storage.driver import StorageDriver
from registry_proxy.storage.filesystem import FilesystemDriver
from registry_proxy.storage.memory import MemoryDriver
from registry_proxy.storage.s3 import S3Driver, S3Settings
from tests.support.swift import Swift

S3_ROOT = "/registry/"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


def s3_driver(swift: Swift, bucket: str, **extra: object) -> S3Driver:
    return S3Driver(S3Settings(**(swift.s3_config(bucket) | {"rootdirectory": S3_ROOT} | extra)))


@pytest.fixture(params=["filesystem", "memory", pytest.param("s3", marks=pytest.mark.e2e)])
async def driver(request: pytest.FixtureRequest, root: Path) -> AsyncIterator[StorageDriver]:
    if request.param == "filesystem":
        yield FilesystemDriver(root)
    elif request.param == "memory":
        yield MemoryDriver()
    else:
        swift: Swift = request.getfixturevalue("swift")
        driver = s3_driver(swift, swift.new_bucket())
        yield driver
        await driver.close()


@pytest.fixture
def storage(driver: StorageDriver) -> Storage:
    return Storage(driver)

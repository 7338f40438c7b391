"""The registry's storage layer: blobs, uploads, manifests, tags, catalog, referrers.

On-disk layout is the Go distribution registry's (see `paths`), so either
registry can serve the other's data directory.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from authcore.settings import ConfigError
from registry_proxy.storage.blobs import Blobs
from registry_proxy.storage.catalog import Catalog
from registry_proxy.storage.driver import StorageDriver
from registry_proxy.storage.filesystem import FilesystemDriver
from registry_proxy.storage.manifests import Manifests
from registry_proxy.storage.memory import MemoryDriver
from registry_proxy.storage.referrers import Referrers
from registry_proxy.storage.tags import Tags
from registry_proxy.storage.upload_strategy import upload_strategy
from registry_proxy.storage.uploads import Uploads
from registry_proxy.storage.validation import ManifestRules

__all__ = [
    "ManifestRules",
    "Storage",
    "StorageDriver",
    "close_driver",
    "make_driver",
    "require_driver",
]

# The libraries a driver imports only once it is configured, and the extra that brings them.
_EXTRAS = {"s3": ("boto3", "botocore", "rehashes")}


class Storage:
    """Every storage service over one driver."""

    def __init__(self, driver: StorageDriver, rules: ManifestRules = ManifestRules()) -> None:
        self.driver = driver
        self.blobs = Blobs(driver)
        self.uploads = Uploads(driver, upload_strategy(driver, self.blobs))
        self.tags = Tags(driver)
        self.referrers = Referrers(driver)
        self.manifests = Manifests(driver, self.blobs, self.tags, self.referrers, rules)
        self.catalog = Catalog(driver)


def make_driver(kind: str, **options: Any) -> StorageDriver:
    """A driver by configuration name: "filesystem" (`root=` or `rootdirectory=`) or "memory"."""
    if kind == "filesystem":
        root = options.pop("root", None) or options.pop("rootdirectory", None)
        if root is None:
            raise ValueError("the filesystem driver needs a root directory")
        _no_more(kind, options)
        return FilesystemDriver(Path(root))
    if kind == "memory":
        _no_more(kind, options)
        return MemoryDriver()
    if kind == "s3":
        require_driver(kind)
        # Imported here: only an S3 configuration needs the S3 client library.
        from registry_proxy.storage.s3 import S3Driver, S3Settings

        known = set(S3Settings.model_fields)
        _no_more(kind, {k: v for k, v in options.items() if k not in known})
        return S3Driver(S3Settings(**options))
    raise ValueError(f"unknown storage driver {kind!r}")


def require_driver(kind: str) -> None:
    """Refuse, naming the extra to install, a driver whose libraries are missing.

    The S3 libraries are imported only when the driver is made: inside the
    server's lifespan, where an ImportError would end it with a traceback
    that says nothing of the extra.
    """
    for module in _EXTRAS.get(kind, ()):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(
                f"storage.{kind} needs the {kind!r} extra, which is not installed ({exc}): "
                f"pip install 'registry-auth[{kind}]'"
            ) from None


async def close_driver(driver: StorageDriver) -> None:
    """Release what a driver holds (the S3 driver's connections and threads), if anything."""
    close = getattr(driver, "close", None)
    if close is not None:
        await close()


def _no_more(kind: str, options: dict[str, Any]) -> None:
    if options:
        raise ValueError(f"unknown {kind} driver options: {', '.join(sorted(options))}")

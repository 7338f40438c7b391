"""What every request handler of one registry app works with, made once in its lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from registry_proxy.auth import AccessController
from registry_proxy.storage import Storage
from registry_proxy.upload_slots import UploadSlots

__all__ = ["Services"]


@dataclass(frozen=True)
class Services:
    storage: Storage
    access: AccessController
    delete_enabled: bool
    uploads: UploadSlots
    # Blob GETs answer 307 to the store where the driver can sign a URL.
    redirect: bool = False

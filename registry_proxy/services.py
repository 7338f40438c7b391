"""What every request handler of one registry app works with, made once in its lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from registry_proxy.auth import AccessController
from registry_proxy.storage import Storage
from registry_proxy.upload_slots import UploadSlots
from registry_proxy.upstreams.pull_through import PullThrough
from registry_proxy.upstreams.routing import Upstreams

__all__ = ["Services"]


@dataclass(frozen=True)
class Services:
    storage: Storage
    access: AccessController
    delete_enabled: bool
    uploads: UploadSlots
    # Other registries served under name prefixes (or, under `proxy`, every name).
    upstreams: Upstreams
    # Their content, cached in `storage`.
    pull_through: PullThrough
    # Blob GETs answer 307 to the store where the driver can sign a URL.
    redirect: bool = False

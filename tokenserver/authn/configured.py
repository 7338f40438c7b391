"""The identity backends a configuration names, in its order."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from tokenserver.authn.base import Backend
from tokenserver.authn.database import DatabaseBackend
from tokenserver.authn.htpasswd import HtpasswdBackend
from tokenserver.authn.ldap import LDAPBackend
from tokenserver.config import Config
from tokenserver.store.users import UserStore

__all__ = ["build_backends"]


def build_backends(
    config: Config, users: UserStore, clock: Callable[[], dt.datetime]
) -> list[Backend]:
    backends: list[Backend] = []
    for name in config.backend_order:
        if name == "htpasswd":
            assert config.users.htpasswd is not None
            backends.append(HtpasswdBackend(config.users.htpasswd))
        elif name == "database":
            recheck = None if config.sso is None else config.sso.recheck
            backends.append(
                DatabaseBackend(
                    users, config.users.credential_cache_ttl, sso_recheck=recheck, now=clock
                )
            )
        elif name == "ldap":
            backends.append(LDAPBackend(config.ldap))
    return backends

"""Which upstream a repository name belongs to, and its name there.

`/v2/<prefix>/<name>` belongs to the upstream of the longest configured
prefix it starts with (a whole component: `hub` takes `hub/alpine`, not
`hubble/x`), and is `<name>` there; under the Go registry's `proxy` every
name belongs to the one upstream, as itself. containerd and CRI-O, pointed
at this registry as a mirror, name the registry they meant in `?ns=`
(`docker.io`, `ghcr.io`) and the repository as it is there: such a request
belongs to the upstream on that host, under its prefix here. Docker Hub
keeps its official images under `library/`: a one-component name meant for
it is `library/<name>` there (and, asked for through `?ns=`, here too).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from registry_proxy.reference import InvalidName, check_name
from registry_proxy.upstreams.client import UpstreamClient

__all__ = ["DOCKER_HUB_HOSTS", "Routed", "Upstream", "Upstreams", "under"]

# Docker Hub's registry goes by several names; `ns=docker.io` is the usual one.
DOCKER_HUB_HOSTS = frozenset({"docker.io", "registry-1.docker.io", "index.docker.io"})
MAX_NS = 255


@dataclass(frozen=True)
class Upstream:
    # "" under `proxy`: every name is this upstream's.
    prefix: str
    url: str
    client: UpstreamClient
    # How long a tag is believed, and cached content kept; None: for ever.
    ttl: dt.timedelta | None
    # False: a gateway, storing nothing.
    cache: bool = True
    # Names (at the upstream) that may be pulled; none: all.
    repositories: tuple[str, ...] = ()
    hosts: frozenset[str] = field(default=frozenset())

    @property
    def docker_hub(self) -> bool:
        return bool(self.hosts & DOCKER_HUB_HOSTS)

    def allows(self, remote: str) -> bool:
        return not self.repositories or any(fnmatchcase(remote, p) for p in self.repositories)


def hosts_of(url: str) -> frozenset[str]:
    """The names `?ns=` may give the registry at `url`: its host, with its port if any."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    names = {parts.netloc.lower(), host}
    if host in DOCKER_HUB_HOSTS:
        names |= DOCKER_HUB_HOSTS
    return frozenset(names)


@dataclass(frozen=True)
class Routed:
    upstream: Upstream
    # The name here: what tokens grant and the cache keeps it under.
    local: str
    # The name at the upstream.
    remote: str


def under(name: str, prefix: str) -> bool:
    """Whether `name` is `prefix` or below it, a whole component (every name is below "")."""
    return not prefix or name == prefix or name.startswith(prefix + "/")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


class Upstreams:
    def __init__(self, upstreams: Sequence[Upstream], *, everything: bool = False) -> None:
        # Longest prefix first, so the most precise one wins.
        self._by_prefix = sorted(upstreams, key=lambda u: len(u.prefix), reverse=True)
        self.everything = everything

    def __bool__(self) -> bool:
        return bool(self._by_prefix)

    def route(self, name: str, ns: str | None = None) -> Routed | None:
        """Where `name` (of a request, with its `?ns=` if any) is served from; None: here.

        None too for an `ns` no upstream answers to, or a name that would be
        too long here: such a request is one for a local repository.
        """
        if ns:
            return self._route_ns(name, ns)
        for upstream in self._by_prefix:
            prefix = upstream.prefix
            if not prefix:
                return self._routed(upstream, name, name)
            if name.startswith(prefix + "/"):
                remote = name[len(prefix) + 1 :]
                if upstream.docker_hub and "/" not in remote:
                    remote = f"library/{remote}"
                return self._routed(upstream, name, remote)
        return None

    def _route_ns(self, name: str, ns: str) -> Routed | None:
        host = ns[:MAX_NS].lower()
        for upstream in self._by_prefix:
            if host in upstream.hosts:
                remote = f"library/{name}" if upstream.docker_hub and "/" not in name else name
                return self._routed(upstream, _join(upstream.prefix, remote), remote)
        return None

    @staticmethod
    def _routed(upstream: Upstream, local: str, remote: str) -> Routed | None:
        try:
            check_name(local)
        except InvalidName:
            return None
        return Routed(upstream, local, remote)

    def owns(self, name: str) -> bool:
        """Whether `name` is an upstream's, so nothing can be pushed to it or deleted."""
        return self.everything or any(under(name, u.prefix) for u in self._by_prefix)

    async def aclose(self) -> None:
        for upstream in self._by_prefix:
            await upstream.client.aclose()

"""Which repositories hold an upstream's content, and for how long, from the configuration
alone: `registry-proxy gc` needs neither an upstream's client nor its password."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from registry_proxy.config import Config
from registry_proxy.upstreams.routing import under

__all__ = ["ConfiguredNames"]


@dataclass(frozen=True, slots=True)
class ConfiguredNames:
    # (prefix, ttl), longest prefix first, as routing decides; "" under `proxy`: every name.
    prefixes: tuple[tuple[str, dt.timedelta | None], ...]

    @classmethod
    def of(cls, config: Config) -> ConfiguredNames:
        if config.proxy is not None:
            return cls((("", config.proxy.ttl),))
        by_length = sorted(config.upstreams, key=lambda u: len(u.prefix), reverse=True)
        return cls(tuple((u.prefix, u.ttl) for u in by_length))

    def __bool__(self) -> bool:
        return bool(self.prefixes)

    def owns(self, name: str) -> bool:
        return any(under(name, prefix) for prefix, _ttl in self.prefixes)

    def ttl(self, name: str) -> dt.timedelta | None:
        for prefix, ttl in self.prefixes:
            if under(name, prefix):
                return ttl
        return None

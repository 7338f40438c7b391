"""Every trust, from the configuration and the database, and a verifier for each.

A trust added or removed through the admin API on any instance counts at the
next login on every instance: trusts are read from the database each time a
name is asked for (one indexed read); only the issuers' keys are cached.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from authcore.cache import Cache
from tokenserver.federation.keys import KeySource
from tokenserver.federation.spec import TrustSpec
from tokenserver.federation.verify import Verifier
from tokenserver.store.trusts import TrustStore

__all__ = ["Trusts"]

MAX_KEY_SOURCES = 1000


class Trusts:
    def __init__(
        self,
        configured: Sequence[TrustSpec],
        store: TrustStore,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.configured = {spec.name: spec for spec in configured}
        self._store = store
        self._clock = clock
        self._sources: Cache[tuple[str, str | None, Path | None, Path | None], KeySource] = Cache(
            MAX_KEY_SOURCES
        )
        self._lock = threading.Lock()

    def spec(self, name: str) -> TrustSpec | None:
        """Blocking (the database)."""
        return self.configured.get(name) or self._store.get(name)

    def names_for_issuer(self, issuer: str) -> list[str]:
        """Blocking: the names of the trusts of this issuer, in name order."""
        if not issuer:
            return []
        names = {n for n, spec in self.configured.items() if spec.issuer.rstrip("/") == issuer}
        names.update(self._store.names_for_issuer(issuer))
        return sorted(names)

    def verifier(self, name: str) -> Verifier | None:
        """Blocking: the verifier of the trust of this name, or None; KeysUnavailable when
        its CA file cannot be read."""
        spec = self.spec(name)
        if spec is None:
            return None
        trust = spec.build()
        key = (trust.issuer, trust.jwks_uri, trust.jwks_file, trust.ca_file)
        with self._lock:
            source = self._sources.get(key)
            if source is None:
                source = KeySource(
                    trust.issuer,
                    jwks_uri=trust.jwks_uri,
                    jwks_file=trust.jwks_file,
                    ca_file=trust.ca_file,
                    # The server's clock: the once-a-minute refetch follows the
                    # same time as the tokens' exp and iat.
                    clock=lambda: self._clock().timestamp(),
                )
            # Stored again on every use: the source dropped first is the one used longest ago.
            self._sources.put(key, source)
        return Verifier(trust, source, self._clock)

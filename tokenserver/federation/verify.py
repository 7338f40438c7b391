"""Checking a pipeline's OIDC ID token against the federation trusts, as strictly as the
registry checks ours.

`Trusts` holds every trust (the configuration's, else the database's) and
hands out a `Verifier` for each. A trust added or removed through the admin
API on any instance counts at the next login on every instance: trusts are
read from the database each time a name is asked for (one indexed read);
only the issuers' keys are cached.

`Verifier` is `authcore.jwt_verify.verify_jwt` (an allowed algorithm that
fits a key of the trust's issuer, `iss`, `aud`, the times with the usual
leeway) and this server's policy: the token's age, every claim condition of
the trust, and `IssuerKeys`, the issuer's key set (`authcore.remote_keys`:
over HTTPS only, with the trust's CA file, else the system's; from a
`jwks_uri`, the issuer's discovery or a file; again at most once a minute
when a token names a key id we do not know). What comes out names the trust
and the token's own subject; what was checked is kept for the audit trail.

Logins run in the server's worker threads, and an issuer may be slow or
hostile (a `jwks_uri` can send its answer a byte at a time). A login waits
for a fetch only briefly, and only while few others do: an issuer that
cannot answer in time is "keys unavailable" (a 503) without holding the
threads every other login needs.
"""

from __future__ import annotations

import datetime as dt
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from authcore.cache import Cache
from authcore.jwk import JWKSKeys, PublicKeyType
from authcore.jwt_verify import (
    LEEWAY,
    MAX_TOKEN_BYTES,
    SignedClaims,
    UnknownKey,
    UntrustedJWT,
    by_kid,
    verify_jwt,
)
from authcore.remote_keys import HTTPOptions, KeySetSource, KeysUnavailable, RemoteKeySet
from tokenserver.authz.patterns import Pattern, Values
from tokenserver.federation.trusts import Trust, TrustSpec
from tokenserver.store.trusts import TrustStore

__all__ = [
    "MAX_WAITING",
    "REFETCH_INTERVAL",
    "WAIT",
    "InvalidIDToken",
    "IssuerKeys",
    "KeysUnavailable",
    "Trusts",
    "Verified",
    "Verifier",
    "looks_like_jwt",
    "match_claims",
]

MAX_KEY_SOURCES = 1000
REFETCH_INTERVAL = 60.0
# How long after a fetch began the logins that need it keep waiting for it.
# Shorter than the fetch's deadline: a worker thread is never held for a whole fetch.
WAIT = 2.0
# Logins waiting for keys at once, over every key set: the rest of the worker
# threads (anyio's 40 by default) stay free for logins that need no fetch.
MAX_WAITING = 16
_NO_VALUES = Values({}, {})


class InvalidIDToken(Exception):
    """Not a token of this trust; the message says why (never the token)."""


@dataclass(frozen=True)
class Verified:
    trust: str
    issuer: str
    subject: str
    jti: str
    # The claims the trust's conditions looked at, as the token had them.
    matched: dict[str, str] = field(default_factory=dict)


def match_claims(conditions: Mapping[str, Pattern], claims: Mapping[str, object]) -> dict[str, str]:
    """The claims each condition looked at, as the token had them; InvalidIDToken unless
    every one is a string its pattern matches."""
    matched = {}
    for name, pattern in conditions.items():
        value = claims.get(name)
        if not isinstance(value, str):
            raise InvalidIDToken(f"claim {name} is missing or not a string")
        if not pattern.matches(value, _NO_VALUES):
            raise InvalidIDToken(f"claim {name} does not match")
        matched[name] = value[:255]
    return matched


def looks_like_jwt(value: str) -> bool:
    parts = value.split(".")
    return len(parts) == 3 and value.startswith("eyJ") and len(value) <= MAX_TOKEN_BYTES


def _by_kid(read: JWKSKeys) -> dict[str, PublicKeyType]:
    # A token names its key by kid: a key published without one cannot be named.
    return {kid: key for kid, key in read.keys if kid is not None}


class IssuerKeys:
    """One issuer's key set as logins wait for it: briefly, and only while few others do."""

    def __init__(
        self,
        issuer: str,
        *,
        jwks_uri: str | None = None,
        jwks_file: Path | None = None,
        ca_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        waiting: threading.BoundedSemaphore | None = None,
    ) -> None:
        # The logins that may wait for keys at once: `Trusts` shares one among
        # every issuer's key set; a key set made alone has its own.
        self._waiting = threading.BoundedSemaphore(MAX_WAITING) if waiting is None else waiting
        try:
            tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            # Checked when the trust was made, but gone or spoilt since: the
            # issuer cannot be reached, as when it is down.
            raise KeysUnavailable(f"ca_file {ca_file}: {type(exc).__name__}") from None
        where = (
            KeySetSource(jwks_uri=jwks_uri)
            if jwks_uri is not None
            else KeySetSource(jwks_file=jwks_file)
            if jwks_file is not None
            else KeySetSource(issuer=issuer)
        )
        self._remote = RemoteKeySet(
            where,
            _by_kid,
            min_refresh=REFETCH_INTERVAL,
            clock=clock,
            http=HTTPOptions(https_only=True, verify=tls, trust_env=False),
            thread_name="oidc-keys",
        )

    @property
    def current(self) -> Mapping[str, PublicKeyType]:
        return self._remote.keys

    def refetch(self) -> bool:
        """Blocking, briefly: fetch the set again if it is due; True once a fetch has ended well.

        KeysUnavailable when the fetch failed, is still under way, or failed
        last time and the next is not due yet: until then the issuer is as
        unreachable as it was, and its tokens are not wrong passwords.
        """
        fetch = self._remote.refetch()
        if fetch is None:
            if self._remote.failure is not None:
                raise KeysUnavailable(self._remote.failure)
            return False
        if not self._waiting.acquire(blocking=False):
            raise KeysUnavailable("too many logins are waiting for issuers' keys")
        try:
            done = fetch.wait(fetch.began + WAIT - time.monotonic())
        finally:
            self._waiting.release()
        if not done:
            raise KeysUnavailable("the issuer's keys are still being fetched")
        if fetch.failure is not None:
            raise KeysUnavailable(fetch.failure)
        return True


class Verifier:
    def __init__(self, trust: Trust, keys: IssuerKeys, clock: Callable[[], dt.datetime]) -> None:
        self.trust = trust
        self._keys = keys
        self._clock = clock

    def verify(self, token: str) -> Verified:
        """Blocking (may fetch keys). Raises InvalidIDToken, or KeysUnavailable."""
        trust = self.trust
        if not looks_like_jwt(token):
            raise InvalidIDToken("not a JWT")
        now = self._clock().timestamp()
        try:
            try:
                signed = self._signed(token, now)
            except UnknownKey:
                if not self._keys.refetch():
                    raise
                signed = self._signed(token, now)
        except UnknownKey:
            raise InvalidIDToken("signed by a key the issuer does not publish") from None
        except UntrustedJWT as exc:
            raise InvalidIDToken(str(exc)) from None
        if now - self._iat(signed) > trust.max_age:
            raise InvalidIDToken("older than the trust's max_age")
        claims = signed.claims
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject or len(subject) > 255:
            raise InvalidIDToken("unusable subject")
        matched = match_claims(self.trust.claims, claims)
        jti = claims.get("jti")
        return Verified(
            trust.name, trust.issuer, subject, jti if isinstance(jti, str) else "", matched
        )

    def _signed(self, token: str, now: float) -> SignedClaims:
        return verify_jwt(
            token,
            by_kid(self._keys.current),
            issuer=self.trust.issuer,
            audience=self.trust.audience,
            leeway=LEEWAY,
            now=now,
            require=("sub", "iat"),
        )

    @staticmethod
    def _iat(signed: SignedClaims) -> float:
        assert signed.iat is not None  # required above
        return signed.iat


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
        self._sources: Cache[tuple[str, str | None, Path | None, Path | None], IssuerKeys] = Cache(
            MAX_KEY_SOURCES
        )
        self._lock = threading.Lock()
        self._waiting = threading.BoundedSemaphore(MAX_WAITING)

    def spec(self, name: str) -> TrustSpec | None:
        """Blocking (the database)."""
        configured = self.configured.get(name)
        if configured is not None:
            return configured
        stored = self._store.get(name)
        return None if stored is None else TrustSpec(**stored)

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
                source = IssuerKeys(
                    trust.issuer,
                    jwks_uri=trust.jwks_uri,
                    jwks_file=trust.jwks_file,
                    ca_file=trust.ca_file,
                    # The server's clock: the once-a-minute refetch follows the
                    # same time as the tokens' exp and iat.
                    clock=lambda: self._clock().timestamp(),
                    waiting=self._waiting,
                )
            # Stored again on every use: the source dropped first is the one used longest ago.
            self._sources.put(key, source)
        return Verifier(trust, source, self._clock)

"""Bearer-token verification and the challenges that ask for a better token.

`verify_token` is a pure function of (token, trusted keys, expectations, now):
the core's `verify_jwt` with the registry's key lookup (an `x5c` chain to a
trusted certificate, else the `kid`) and its `access` claim, so forged tokens
are easy to test. `AccessController` adds key refresh, a
cache of verified tokens and the mapping to `WWW-Authenticate` challenges.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature as InvalidSignatureError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authcore import jwt_verify
from authcore.cache import Cache
from authcore.claims import access_from_claims
from authcore.jwk import ALGORITHMS, PublicKeyType
from authcore.jwt_verify import LEEWAY, UntrustedJWT, verify_jwt
from authcore.scope import Access
from registry_proxy.errors import RegistryError
from registry_proxy.trust import KeyStore, TrustedKeys

__all__ = [
    "ALLOWED_ALGORITHMS",
    "AccessController",
    "InvalidToken",
    "VerifiedToken",
    "challenge_header",
    "verify_token",
]

ALLOWED_ALGORITHMS = frozenset(ALGORITHMS)


class InvalidToken(Exception):
    """The token cannot be trusted; the reason is for logs, never echoed with secrets."""


class UnknownKey(InvalidToken):
    """The token names a key we do not (yet) trust."""


@dataclass(frozen=True)
class VerifiedToken:
    subject: str
    access: tuple[Access, ...]
    expires_at: int

    def allows(self, needed: Access) -> bool:
        granted: set[str] = set()
        for entry in self.access:
            if entry.type == needed.type and entry.name == needed.name:
                granted |= entry.actions
        return "*" in granted or needed.actions <= granted


def _x5c_key(chain: object, roots: Sequence[x509.Certificate], now: float) -> PublicKeyType:
    if not isinstance(chain, list) or not chain or len(chain) > 10:
        raise InvalidToken("malformed x5c")
    try:
        certs = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in chain]
    except (TypeError, ValueError, binascii.Error):
        raise InvalidToken("malformed x5c certificate") from None
    for cert in certs:
        if not cert.not_valid_before_utc.timestamp() <= now <= cert.not_valid_after_utc.timestamp():
            raise InvalidToken("x5c certificate outside its validity period")
    try:
        for child, parent in itertools.pairwise(certs):
            child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignatureError):
        raise InvalidToken("x5c chain does not verify") from None
    top = certs[-1]
    top_der = top.public_bytes(serialization.Encoding.DER)
    anchored = False
    for root in roots:
        if hmac.compare_digest(root.public_bytes(serialization.Encoding.DER), top_der):
            anchored = True
            break
        try:
            top.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignatureError):
            continue
        anchored = (
            root.not_valid_before_utc.timestamp() <= now <= root.not_valid_after_utc.timestamp()
        )
        if anchored:
            break
    if not anchored:
        raise InvalidToken("x5c chain does not lead to a trusted certificate")
    key = certs[0].public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise InvalidToken("unsupported key type")
    return key


def _signing_key(header: Mapping[str, Any], keys: TrustedKeys, now: float) -> PublicKeyType:
    """The trusted key a token names: its `x5c` chain's, if that leads to one of our
    certificates, else the key its `kid` names.

    Either way the key is one we trust and the signature is checked with it, so
    an `x5c` that leads nowhere (or that we have no certificates for, trusting a
    JWKS alone) costs nothing: the token server puts both in every token, for
    the Go registries that look at only one of them.
    """
    reason = "unknown signing key"
    if "x5c" in header and keys.roots:
        try:
            return _x5c_key(header["x5c"], keys.roots, now)
        except InvalidToken as exc:
            reason = f"{exc}, and no trusted key has its kid"
    kid = header.get("kid")
    key = keys.by_kid.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise jwt_verify.UnknownKey(reason)
    return key


def verify_token(
    token: str,
    keys: TrustedKeys,
    *,
    issuer: str,
    audience: str,
    now: float,
    leeway: int = LEEWAY,
) -> VerifiedToken:
    def find(header: Mapping[str, Any]) -> PublicKeyType:
        return _signing_key(header, keys, now)

    try:
        signed = verify_jwt(token, find, issuer=issuer, audience=audience, leeway=leeway, now=now)
    except jwt_verify.UnknownKey as exc:
        raise UnknownKey(str(exc)) from None
    except UntrustedJWT as exc:
        raise InvalidToken(str(exc)) from None
    claims = signed.claims
    exp = signed.exp
    assert exp is not None  # verify_jwt requires it
    try:
        access = access_from_claims(claims.get("access"))
    except ValueError:
        raise InvalidToken("malformed access claim") from None
    sub = claims.get("sub")
    return VerifiedToken(sub if isinstance(sub, str) else "", tuple(access), int(exp))


def challenge_header(realm: str, service: str, scopes: Sequence[Access], error: str | None) -> str:
    parts = [f'realm="{realm}"', f'service="{service}"']
    if scopes:
        parts.append(f'scope="{" ".join(str(s) for s in scopes)}"')
    if error:
        parts.append(f'error="{error}"')
    return "Bearer " + ",".join(parts)


@dataclass(frozen=True, slots=True)
class AccessController:
    keys: KeyStore
    _: KW_ONLY
    realm: str
    service: str
    issuer: str
    leeway: int = 60
    clock: Callable[[], float] = time.time
    # Verified tokens, so that a client's next request with the same one skips the signature.
    cache: Cache[str, VerifiedToken] = field(default_factory=lambda: Cache(10_000))

    def _challenge(self, needed: Sequence[Access], error: str | None, detail: Any) -> RegistryError:
        header = challenge_header(self.realm, self.service, needed, error)
        return RegistryError("UNAUTHORIZED", detail, headers={"WWW-Authenticate": header})

    async def verify(self, token: str) -> VerifiedToken:
        now = self.clock()
        cached = self.cache.get(token)
        if cached is not None and now <= cached.expires_at + self.leeway:
            return cached
        check = functools.partial(
            verify_token, issuer=self.issuer, audience=self.service, now=now, leeway=self.leeway
        )
        try:
            verified = check(token, self.keys.current)
        except UnknownKey:
            if not await self.keys.refresh():
                raise
            verified = check(token, self.keys.current)
        return self.cache.put(token, verified)

    async def authorize(self, authorization: str | None, needed: Sequence[Access]) -> VerifiedToken:
        """The verified token if it grants everything `needed`; else a challenge error."""
        if not authorization:
            raise self._challenge(needed, None, None)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise self._challenge(needed, None, None)
        try:
            verified = await self.verify(token.strip())
        except InvalidToken as exc:
            raise self._challenge(needed, "invalid_token", None) from exc
        missing = [a for a in needed if not verified.allows(a)]
        if missing:
            detail = [
                {"Type": a.type, "Name": a.name, "Action": ",".join(sorted(a.actions))}
                for a in missing
            ]
            raise self._challenge(needed, "insufficient_scope", detail)
        return verified

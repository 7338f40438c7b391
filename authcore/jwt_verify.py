"""The one JWT verifier: token, trusted keys, issuer, audience, leeway, now -> claims.

Three callers read tokens: the registry (the token server's tokens), the token
server's federation (OIDC ID tokens of keyless CI) and its admin API (its own
tokens as Bearer credentials). Each keeps its own policy: which keys it
trusts and how it finds them (`KeyFinder`), which claims it needs afterwards
and what it answers. What none of them may get wrong is here, once, in
`verify_jwt`, a pure function (the clock is an argument) so forged tokens are
easy to test:

- The token is at most `MAX_TOKEN_BYTES`: nothing larger is parsed at all.

- `alg` is one of `ALGORITHMS` and fits the key the token names. PyJWT answers
  an ES256 token naming an RSA key (or the reverse) with a `TypeError`, not
  an `InvalidTokenError`, so a verifier that relied on it answered forged
  tokens with a 500. Taking `alg` from the header is safe only because of
  this check: the key, not the attacker, decides which algorithm verifies.
- `exp`, `nbf` and `iat`, when present, are finite numbers. Python's json
  module (which PyJWT uses) reads `NaN` and `Infinity`, and `exp: NaN`
  compares false with every time, so it would never expire; `true` is an
  int to Python and a string is no time at all. `verify_jwt` also refuses
  fractions: every issuer here and the Go registry write whole seconds.
- `iss` and `aud` are the expected ones; `exp` is required and, with `nbf`
  and `iat`, judged with one leeway: expired at `exp + leeway`, not valid
  before `nbf - leeway`, never issued after `now + leeway`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authcore.jwk import ALGORITHMS, PublicKeyType

__all__ = [
    "LEEWAY",
    "MAX_TOKEN_BYTES",
    "Expired",
    "KeyFinder",
    "KeyMismatch",
    "MalformedTime",
    "NotYetValid",
    "SignedClaims",
    "TokenTooLarge",
    "UnknownKey",
    "UntrustedJWT",
    "WrongAudience",
    "WrongIssuer",
    "by_kid",
    "decode_signed",
    "key_fits",
    "signed_header",
    "unverified_claims",
    "verify_jwt",
]

MAX_TOKEN_BYTES = 16 * 1024
# Seconds of clock difference between issuer and verifier forgiven, the Go registry's.
LEEWAY = 60
# A key id longer than this names no key anyone publishes.
MAX_KID_CHARS = 256

# The curve each ECDSA algorithm signs on; any other curve is a forgery attempt.
_EC_CURVES: Mapping[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}
_RSA = frozenset({"RS256", "RS384", "RS512"})
TIME_CLAIMS = ("exp", "nbf", "iat")


class UntrustedJWT(Exception):
    """Not a token to trust; the message says why, never what the token holds."""


class KeyMismatch(UntrustedJWT):
    """The token's `alg` is not one its key can verify (the key-confusion forgery)."""


class MalformedTime(UntrustedJWT):
    """A time claim that is not a finite number (to `verify_jwt`: not a whole one)."""


class TokenTooLarge(UntrustedJWT):
    """Longer than `MAX_TOKEN_BYTES`: refused before anything in it is read."""


class UnknownKey(UntrustedJWT):
    """The token names no key we trust (yet: a key set may be fetched again)."""


class WrongIssuer(UntrustedJWT):
    """`iss` is not the issuer expected."""


class WrongAudience(UntrustedJWT):
    """`aud` names none of the audiences expected."""


class Expired(UntrustedJWT):
    """`exp` passed, leeway included."""


class NotYetValid(UntrustedJWT):
    """`nbf` or `iat` is later than now, leeway included."""


class KeyFinder(Protocol):
    """The trusted key a token's (unverified) header names; `UnknownKey` if none."""

    def __call__(self, header: Mapping[str, Any], /) -> PublicKeyType: ...


def by_kid(keys: Mapping[str, PublicKeyType]) -> KeyFinder:
    """A `KeyFinder` that looks the header's `kid` up in `keys`."""

    def find(header: Mapping[str, Any]) -> PublicKeyType:
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_CHARS:
            # Not an unknown key: no fetch of a key set could find it.
            raise UntrustedJWT("no key id")
        key = keys.get(kid)
        if key is None:
            raise UnknownKey("unknown signing key")
        return key

    return find


@dataclass(frozen=True)
class SignedClaims:
    """A token's claims once its signature held, with its times as plain floats."""

    claims: dict[str, Any]
    exp: float | None
    nbf: float | None
    iat: float | None


def key_fits(alg: str, key: PublicKeyType) -> bool:
    curve = _EC_CURVES.get(alg)
    if curve is not None:
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, curve)
    return alg in _RSA and isinstance(key, rsa.RSAPublicKey)


def unverified_claims(token: str) -> dict[str, Any] | None:
    """The claims of a token whose signature nobody has checked yet, or None if it has none.

    Only to choose how to verify it (which issuer's trusts to try); nothing
    read here may be believed until `verify_jwt` has checked the token.
    """
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return claims if isinstance(claims, dict) else None


def signed_header(token: str) -> tuple[str, dict[str, Any]]:
    """The token's `alg`, one we accept, and its whole header (unverified: to find the key)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise UntrustedJWT("malformed header") from None
    alg = header.get("alg")
    # Checked for type first: a list is no algorithm, and no set can hold it.
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise UntrustedJWT(f"algorithm {str(alg)[:20]!r} is not accepted")
    return alg, header


def verify_jwt(
    token: str,
    keys: KeyFinder,
    *,
    issuer: str,
    audience: str | Collection[str],
    leeway: float,
    now: float,
    require: Sequence[str] = (),
) -> SignedClaims:
    """The claims of `token` if it is one to trust now; else an `UntrustedJWT` saying why.

    `audience` is the one audience expected, or several of which `aud` must
    name one. `require` names claims that must be present besides `exp`.
    """
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenTooLarge("token too large")
    alg, header = signed_header(token)
    signed = decode_signed(token, keys(header), alg, require=("exp", *require))
    claims = signed.claims
    if claims.get("iss") != issuer:
        raise WrongIssuer("wrong issuer")
    expected = {audience} if isinstance(audience, str) else set(audience)
    aud = claims.get("aud")
    named = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not any(isinstance(a, str) and a in expected for a in named):
        raise WrongAudience("wrong audience")
    for name in TIME_CLAIMS:
        if name in claims and not isinstance(claims[name], int):
            raise MalformedTime(f"{name} is not a whole number of seconds")
    exp, nbf, iat = signed.exp, signed.nbf, signed.iat
    if exp is None or now >= exp + leeway:
        raise Expired("expired")
    if nbf is not None and now < nbf - leeway:
        raise NotYetValid("not yet valid")
    if iat is not None and now < iat - leeway:
        raise NotYetValid("issued in the future")
    return signed


def decode_signed(
    token: str, key: PublicKeyType, alg: str, *, require: Sequence[str] = ()
) -> SignedClaims:
    """The claims of a token `key` signed with `alg`, each of `require` present.

    The lower half of `verify_jwt`, which product code calls instead: `iss`,
    `aud` and the times' values are judged there, the times' types here.
    """
    if alg not in ALGORITHMS or not key_fits(alg, key):
        raise KeyMismatch(f"{alg[:20]!r} does not fit an {_kind(key)} key")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            options={
                "require": list(require),
                "verify_aud": False,
                "verify_iss": False,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise UntrustedJWT("bad signature") from None
    except jwt.PyJWTError as exc:
        raise UntrustedJWT(type(exc).__name__) from None
    exp, nbf, iat = (_time(claims, name) for name in TIME_CLAIMS)
    return SignedClaims(claims, exp, nbf, iat)


def _time(claims: Mapping[str, Any], name: str) -> float | None:
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedTime(f"{name} is not a number")
    try:
        seconds = float(value)
    except OverflowError:  # an integer past a float's range
        raise MalformedTime(f"{name} is out of range") from None
    if not math.isfinite(seconds):
        raise MalformedTime(f"{name} is not a finite number")
    return seconds


def _kind(key: PublicKeyType) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    return "RSA"

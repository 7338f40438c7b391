"""What every verifier of a JWT here checks the same way, before it trusts a claim.

Three verifiers read tokens: the token server's of OIDC ID tokens (keyless
CI) and of its own tokens (admin API Bearer), and the registry's. Each finds
its key by its own rules and judges `iss`, `aud` and the times by its own
rules; what none of them may get wrong is here, once:

- `alg` is one of `ALGORITHMS` and fits the key the token names. PyJWT answers
  an ES256 token naming an RSA key (or the reverse) with a `TypeError`, not
  an `InvalidTokenError`, so a verifier that relied on it answered forged
  tokens with a 500. Taking `alg` from the header is safe only because of
  this check: the key, not the attacker, decides which algorithm verifies.
- `exp`, `nbf` and `iat`, when present, are finite numbers. Python's json
  module (which PyJWT uses) reads `NaN` and `Infinity`, and `exp: NaN`
  compares false with every time, so it would never expire; `true` is an
  int to Python and a string is no time at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authcore.jwk import ALGORITHMS, PublicKeyType

__all__ = [
    "KeyMismatch",
    "MalformedTime",
    "SignedClaims",
    "UntrustedJWT",
    "decode_signed",
    "key_fits",
    "signed_header",
    "unverified_claims",
]

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
    """A time claim that is not a finite number."""


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
    read here may be believed until `decode_signed` has checked the token.
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


def decode_signed(
    token: str,
    key: PublicKeyType,
    alg: str,
    *,
    audience: str | Sequence[str] | None = None,
    issuer: str | None = None,
    require: Sequence[str] = (),
) -> SignedClaims:
    """The claims of a token `key` signed with `alg`, `iss` and `aud` checked if given.

    The times are checked for type only: how late is too late is the caller's rule.
    """
    if alg not in ALGORITHMS or not key_fits(alg, key):
        raise KeyMismatch(f"{alg[:20]!r} does not fit an {_kind(key)} key")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=audience,
            issuer=issuer,
            options={
                "require": list(require),
                "verify_aud": audience is not None,
                "verify_iss": issuer is not None,
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

"""Token keys as both services see them: the allowed algorithms, libtrust key ids, JWKs.

`ALGORITHMS` is the one list of signature algorithms anything here signs
with or accepts: ECDSA and RSA PKCS#1, never `none`, HMAC (a public key must
never double as a shared secret), PS256 or EdDSA (the Go registry 2.8
refuses both).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = [
    "ALGORITHMS",
    "EC_CURVES",
    "JWKSKeys",
    "PublicKeyType",
    "libtrust_kid",
    "public_jwk",
    "read_jwks",
]

ALGORITHMS = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512")
# The curve each ECDSA algorithm signs on, by its JWK name.
EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}

PublicKeyType = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def libtrust_kid(public_key: PublicKeyType) -> str:
    """The key id the Go registry derives: SHA-256 of the DER SPKI, 240 bits, base32."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_uint(value: int) -> str:
    return _b64url(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def public_jwk(key: PublicKeyType, kid: str, alg: str) -> dict[str, Any]:
    """The RFC 7517 form of a public signing key."""
    jwk: dict[str, Any] = {"kid": kid, "use": "sig", "alg": alg}
    if isinstance(key, ec.EllipticCurvePublicKey):
        numbers = key.public_numbers()
        size = (key.curve.key_size + 7) // 8
        return jwk | {
            "kty": "EC",
            "crv": EC_CURVES[alg],
            "x": _b64url(numbers.x.to_bytes(size, "big")),
            "y": _b64url(numbers.y.to_bytes(size, "big")),
        }
    rsa_numbers = key.public_numbers()
    return jwk | {"kty": "RSA", "n": _b64url_uint(rsa_numbers.n), "e": _b64url_uint(rsa_numbers.e)}


@dataclass(frozen=True)
class JWKSKeys:
    """The usable signing keys of a JWKS document, each with the `kid` it was published under."""

    keys: tuple[tuple[str | None, PublicKeyType], ...]
    # Entries passed over: not objects, not public EC or RSA keys, or past the limit.
    skipped: int


def read_jwks(document: object, limit: int | None = None) -> JWKSKeys:
    """The keys of a JWKS document (RFC 7517); `ValueError` if it is not one.

    An entry that is no usable key is skipped, never fatal: one odd key must
    not make an issuer's whole key set unusable.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    entries = document["keys"]
    found: list[tuple[str | None, PublicKeyType]] = []
    skipped = max(len(entries) - limit, 0) if limit is not None else 0
    for entry in entries[:limit]:
        if not isinstance(entry, dict):
            skipped += 1
            continue
        try:
            key = jwt.PyJWK.from_dict(entry).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, KeyError, TypeError, ValueError):
            skipped += 1
            continue
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            skipped += 1
            continue
        kid = entry.get("kid")
        found.append((kid if isinstance(kid, str) else None, key))
    return JWKSKeys(tuple(found), skipped)

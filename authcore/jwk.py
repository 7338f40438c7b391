"""Token keys as both services see them: the allowed algorithms, libtrust key ids, JWKs.

`ALGORITHMS` is the one list of signature algorithms anything here signs
with or accepts: ECDSA and RSA PKCS#1, never `none`, HMAC (a public key must
never double as a shared secret), PS256 or EdDSA (the Go registry 2.8
refuses both).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = ["ALGORITHMS", "EC_CURVES", "PublicKeyType", "libtrust_kid", "public_jwk"]

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

"""JWS compact serialization (RFC 7515) of a claim set, signed with one key.

The header is encoded once per key; each token costs one JSON encoding of
its claims, two base64url encodings and the signature itself. ECDSA
signatures are the fixed-width `r || s` JWS asks for (RFC 7518 §3.4), not
the DER that the key produces.

Our own rather than PyJWT's `jwt.encode`, for the warm token path: an ES256
token with `x5c`, claims spelt by `fast_path.claims_json`, took 111 us
against 199 (medians of seven rounds, 2026-12-07, the machine under load;
the signature alone is most of ours). Every algorithm's output is checked
against PyJWT's verifier in the tests.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tokenserver.keys import PrivateKeyType

__all__ = ["CompactSigner"]

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _signer(key: PrivateKeyType, alg: str) -> Callable[[bytes], bytes]:
    digest = _HASHES[alg[2:]]()
    if alg.startswith("ES") and isinstance(key, ec.EllipticCurvePrivateKey):
        ecdsa = ec.ECDSA(digest)
        width = (key.curve.key_size + 7) // 8

        def sign_ec(data: bytes) -> bytes:
            r, s = decode_dss_signature(key.sign(data, ecdsa))
            return r.to_bytes(width, "big") + s.to_bytes(width, "big")

        return sign_ec
    if alg.startswith("RS") and isinstance(key, rsa.RSAPrivateKey):
        pkcs1 = padding.PKCS1v15()

        def sign_rsa(data: bytes) -> bytes:
            return key.sign(data, pkcs1, digest)

        return sign_rsa
    raise ValueError(f"cannot sign {alg} with a {type(key).__name__}")


class CompactSigner:
    def __init__(self, key: PrivateKeyType, alg: str, header: Mapping[str, Any]) -> None:
        self._sign = _signer(key, alg)
        encoded = json.dumps({"alg": alg, **header}, separators=(",", ":")).encode()
        self._header = _b64(encoded) + b"."

    def sign(self, claims: Mapping[str, Any]) -> str:
        return self.sign_json(json.dumps(claims, separators=(",", ":")))

    def sign_json(self, payload: str) -> str:
        """Sign claims already spelt as JSON."""
        signing_input = self._header + _b64(payload.encode())
        return (signing_input + b"." + _b64(self._sign(signing_input))).decode("ascii")

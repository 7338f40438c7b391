"""Signing keys: generation, libtrust key ids, JWKS, rotation.

A keys directory holds `<stem>.crt` certificates and, for keys that may still
sign, the matching `<stem>.key`. Every certificate is trusted (published in
the JWKS and in `bundle.pem`); the newest key with a private half signs unless
one is named, so a new key can be rolled out before the old one is retired.
Every key is known by its libtrust id, in the tokens' `kid` and in the JWKS
alike, so a registry that reads the JWKS finds the key a token names.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from authcore.jwk import ALGORITHMS, PublicKeyType, libtrust_kid, public_jwk

__all__ = [
    "KeySet",
    "KeysError",
    "PublicKey",
    "SigningKey",
    "generate_key",
    "load_keys",
    "load_public_keys",
    "write_jwks",
]

_CURVES: dict[str, ec.EllipticCurve] = {
    "ES256": ec.SECP256R1(),
    "ES384": ec.SECP384R1(),
    "ES512": ec.SECP521R1(),
}
_CURVE_ALG = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
BUNDLE_NAME = "bundle.pem"

PrivateKeyType = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class KeysError(Exception):
    """The keys directory cannot provide what was asked of it."""


def _algorithm_for(public_key: PublicKeyType, preferred: str) -> str:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        alg = _CURVE_ALG.get(public_key.curve.name)
        if alg is None:
            raise KeysError(f"unsupported curve {public_key.curve.name}")
        return alg
    return preferred if preferred.startswith("RS") else "RS256"


@dataclass(frozen=True)
class PublicKey:
    kid: str
    alg: str
    key: PublicKeyType
    certificate: x509.Certificate
    path: Path

    def jwk(self) -> dict[str, Any]:
        return public_jwk(self.key, self.kid, self.alg) | {"x5c": [self.x5c]}

    @property
    def x5c(self) -> str:
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        return base64.b64encode(der).decode("ascii")


@dataclass(frozen=True)
class SigningKey:
    public: PublicKey
    private: PrivateKeyType

    @property
    def kid(self) -> str:
        return self.public.kid

    @property
    def alg(self) -> str:
        return self.public.alg


@dataclass(frozen=True)
class KeySet:
    """Every trusted public key and the one key that signs."""

    public: tuple[PublicKey, ...]
    signing: SigningKey

    def jwks(self) -> dict[str, Any]:
        return jwks_document(self.public)


def load_public_keys(keys_dir: Path, algorithm: str = "ES256") -> tuple[PublicKey, ...]:
    """Every certificate of a keys directory, oldest first; no private key is read."""
    if not keys_dir.is_dir():
        raise KeysError(f"keys directory {keys_dir} does not exist")
    public: list[PublicKey] = []
    for cert_path in sorted(keys_dir.glob("*.crt")):
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise KeysError(f"{cert_path.name}: only EC and RSA keys can sign registry tokens")
        public.append(
            PublicKey(libtrust_kid(key), _algorithm_for(key, algorithm), key, cert, cert_path)
        )
    return tuple(public)


def jwks_document(public: tuple[PublicKey, ...]) -> dict[str, Any]:
    return {"keys": [k.jwk() for k in public]}


def write_jwks(keys_dir: Path, output: Path, algorithm: str = "ES256") -> Path:
    """The JWKS of every certificate as a file (the Go registry 3 reads `auth.token.jwks` so)."""
    document = json.dumps(jwks_document(load_public_keys(keys_dir, algorithm)), indent=2) + "\n"
    # Whole or not at all: a registry starting meanwhile must not read half a file.
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    tmp.write_text(document)
    tmp.replace(output)
    return output


def load_keys(keys_dir: Path, algorithm: str = "ES256", signing_key: str | None = None) -> KeySet:
    """Load a keys directory; `signing_key` picks a key by kid or file stem."""
    public = list(load_public_keys(keys_dir, algorithm))
    candidates = [p for p in public if p.path.with_suffix(".key").exists()]
    if signing_key:
        candidates = [p for p in candidates if signing_key in (p.kid, p.path.stem)]
        if not candidates:
            raise KeysError(f"token.signing_key {signing_key!r} names no key in {keys_dir}")
    if not candidates:
        raise KeysError(
            f"no signing key in {keys_dir}: run `tokenserver keys generate --config FILE`"
        )
    chosen = candidates[-1]
    private = serialization.load_pem_private_key(
        chosen.path.with_suffix(".key").read_bytes(), password=None
    )
    if not isinstance(private, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise KeysError(f"{chosen.path.stem}.key is not an EC or RSA key")
    if libtrust_kid(private.public_key()) != chosen.kid:
        raise KeysError(f"{chosen.path.stem}.key does not match its certificate")
    return KeySet(tuple(public), SigningKey(chosen, private))


def generate_key(keys_dir: Path, algorithm: str = "ES256", now: dt.datetime | None = None) -> Path:
    """Create a key and a self-signed certificate; return the certificate's path."""
    if algorithm not in ALGORITHMS:
        raise KeysError(f"unsupported algorithm {algorithm}; use one of {', '.join(ALGORITHMS)}")
    now = now or dt.datetime.now(dt.UTC)
    private: PrivateKeyType
    if algorithm.startswith("ES"):
        private = ec.generate_private_key(_CURVES[algorithm])
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = libtrust_kid(private.public_key())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"token signing key {kid[:14]}")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    keys_dir.mkdir(parents=True, exist_ok=True)
    stem = f"token-{now:%Y%m%dT%H%M%S%f}-{algorithm.lower()}"
    key_path = keys_dir / f"{stem}.key"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert_path = keys_dir / f"{stem}.crt"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_bundle(keys_dir)
    return cert_path


def write_bundle(keys_dir: Path) -> Path:
    """Concatenate every certificate for a registry's `rootcertbundle`."""
    bundle = keys_dir / BUNDLE_NAME
    tmp = bundle.with_suffix(".tmp")
    tmp.write_bytes(b"".join(p.read_bytes() for p in sorted(keys_dir.glob("*.crt"))))
    tmp.replace(bundle)
    return bundle

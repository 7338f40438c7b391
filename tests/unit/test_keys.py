"""Signing keys (SPEC C9): libtrust kid, generation, JWKS, rotation, bundle."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import stat
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authcore.jwk import libtrust_kid
from tokenserver.keys import KeysError, generate_key, load_keys

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def expected_kid(public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> str:
    """The libtrust key id, written out from its definition."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    assert len(b32) == 48 and "=" not in b32  # 240 bits: no padding
    return ":".join(b32[i * 4 : i * 4 + 4] for i in range(12))


def _b64url_int(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_libtrust_kid_matches_independent_computation() -> None:
    for key in (
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        ec.generate_private_key(ec.SECP384R1()).public_key(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(),
    ):
        kid = libtrust_kid(key)
        assert kid == expected_kid(key)
        assert re.fullmatch(r"[A-Z2-7]{4}(:[A-Z2-7]{4}){11}", kid)


def test_libtrust_kid_fixed_vector() -> None:
    # A fixed P-256 key, so a change in the derivation cannot hide behind randomness.
    private = ec.derive_private_key(0x1234567890ABCDEF, ec.SECP256R1())
    assert libtrust_kid(private.public_key()) == expected_kid(private.public_key())


@pytest.mark.parametrize(
    ("algorithm", "key_type"),
    [("ES256", ec.EllipticCurvePublicKey), ("RS256", rsa.RSAPublicKey)],
)
def test_generate_and_load(tmp_path: Path, algorithm: str, key_type: type) -> None:
    cert_path = generate_key(tmp_path, algorithm, now=T0)
    assert cert_path.suffix == ".crt" and cert_path.exists()
    key_path = cert_path.with_suffix(".key")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600

    cert = _cert(cert_path)
    assert isinstance(cert.public_key(), key_type)
    if algorithm == "ES256":
        assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert cert.not_valid_before_utc <= T0 < cert.not_valid_after_utc

    keys = load_keys(tmp_path, algorithm)
    assert keys.signing.alg == algorithm
    assert keys.signing.kid == expected_kid(cert.public_key())  # type: ignore[arg-type]
    assert keys.signing.public.path == cert_path

    # The private half really signs what the certificate's key verifies.
    token = jwt.encode({"x": 1}, keys.signing.private, algorithm=algorithm)
    assert jwt.decode(token, cert.public_key(), algorithms=[algorithm]) == {"x": 1}  # type: ignore[arg-type]


def test_es256_signature_is_raw_r_s(tmp_path: Path) -> None:
    generate_key(tmp_path, "ES256", now=T0)
    keys = load_keys(tmp_path)
    token = jwt.encode({"x": 1}, keys.signing.private, algorithm="ES256")
    signature = base64.urlsafe_b64decode(token.rsplit(".", 1)[1] + "==")
    assert len(signature) == 64


def test_unknown_algorithm_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeysError, match="unsupported algorithm"):
        generate_key(tmp_path, "EdDSA")


def test_jwks_publishes_every_key_with_matching_numbers(tmp_path: Path) -> None:
    generate_key(tmp_path, "ES256", now=T0)
    generate_key(tmp_path, "RS256", now=T0 + dt.timedelta(days=1))
    keys = load_keys(tmp_path)
    jwks = keys.jwks()
    assert len(jwks["keys"]) == 2
    by_kid = {k["kid"]: k for k in jwks["keys"]}
    for cert_path in sorted(tmp_path.glob("*.crt")):
        public = _cert(cert_path).public_key()
        jwk = by_kid[expected_kid(public)]  # type: ignore[arg-type]
        assert jwk["use"] == "sig"
        if isinstance(public, ec.EllipticCurvePublicKey):
            numbers = public.public_numbers()
            assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("EC", "P-256", "ES256")
            assert _b64url_int(jwk["x"]) == numbers.x
            assert _b64url_int(jwk["y"]) == numbers.y
            # Fixed-width coordinates (RFC 7518 §6.2.1.2).
            assert len(base64.urlsafe_b64decode(jwk["x"] + "=")) == 32
        else:
            assert isinstance(public, rsa.RSAPublicKey)
            numbers_rsa = public.public_numbers()
            assert (jwk["kty"], jwk["alg"]) == ("RSA", "RS256")
            assert _b64url_int(jwk["n"]) == numbers_rsa.n
            assert _b64url_int(jwk["e"]) == numbers_rsa.e
        # x5c: standard base64 DER of this very certificate.
        assert base64.b64decode(jwk["x5c"][0]) == _cert(cert_path).public_bytes(
            serialization.Encoding.DER
        )
        # pyjwt reads it back to the same key.
        assert jwt.PyJWK(jwk).key.public_numbers() == public.public_numbers()


def test_rotation_newest_signs_both_published(tmp_path: Path) -> None:
    old = generate_key(tmp_path, now=T0)
    new = generate_key(tmp_path, now=T0 + dt.timedelta(days=30))
    old_kid = expected_kid(_cert(old).public_key())  # type: ignore[arg-type]
    new_kid = expected_kid(_cert(new).public_key())  # type: ignore[arg-type]
    assert old_kid != new_kid

    keys = load_keys(tmp_path)
    assert keys.signing.kid == new_kid
    assert {k["kid"] for k in keys.jwks()["keys"]} == {old_kid, new_kid}

    by_kid = load_keys(tmp_path, signing_key=old_kid)
    assert by_kid.signing.kid == old_kid
    by_stem = load_keys(tmp_path, signing_key=old.stem)
    assert by_stem.signing.kid == old_kid
    assert {k.kid for k in by_stem.public} == {old_kid, new_kid}

    with pytest.raises(KeysError, match="names no key"):
        load_keys(tmp_path, signing_key="nope")


def test_certificate_without_key_is_published_but_cannot_sign(tmp_path: Path) -> None:
    retired = generate_key(tmp_path, now=T0 + dt.timedelta(days=30))  # newest, yet retired
    live = generate_key(tmp_path, now=T0)
    retired.with_suffix(".key").unlink()
    retired_kid = expected_kid(_cert(retired).public_key())  # type: ignore[arg-type]

    keys = load_keys(tmp_path)
    assert keys.signing.kid == expected_kid(_cert(live).public_key())  # type: ignore[arg-type]
    assert retired_kid in {k["kid"] for k in keys.jwks()["keys"]}
    with pytest.raises(KeysError):
        load_keys(tmp_path, signing_key=retired_kid)
    with pytest.raises(KeysError):
        load_keys(tmp_path, signing_key=retired.stem)

    live.with_suffix(".key").unlink()
    with pytest.raises(KeysError, match="no signing key"):
        load_keys(tmp_path)


def test_key_not_matching_its_certificate_is_refused(tmp_path: Path) -> None:
    a = generate_key(tmp_path, now=T0)
    b = generate_key(tmp_path, now=T0 + dt.timedelta(days=1))
    b.with_suffix(".key").write_bytes(a.with_suffix(".key").read_bytes())
    with pytest.raises(KeysError, match="does not match"):
        load_keys(tmp_path)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(KeysError, match="does not exist"):
        load_keys(tmp_path / "absent")


def test_bundle_contains_every_certificate(tmp_path: Path) -> None:
    certs = [
        generate_key(tmp_path, alg, now=T0 + dt.timedelta(days=i))
        for i, alg in enumerate(("ES256", "RS256", "ES384"))
    ]
    bundle = x509.load_pem_x509_certificates((tmp_path / "bundle.pem").read_bytes())
    assert len(bundle) == 3
    assert {c.fingerprint(hashes.SHA256()) for c in bundle} == {
        _cert(p).fingerprint(hashes.SHA256()) for p in certs
    }


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512", "RS256", "RS384", "RS512"])
def test_compact_tokens_verify_with_an_independent_jws_implementation(alg: str) -> None:
    from tokenserver.jws import CompactSigner

    curves = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}
    key = (
        ec.generate_private_key(curves[alg])
        if alg.startswith("ES")
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    claims = {"sub": "zoë", "aud": "registry", "access": [{"type": "repository"}], "iat": 1}
    token = CompactSigner(key, alg, {"typ": "JWT", "kid": "K1"}).sign(claims)
    assert jwt.get_unverified_header(token) == {"alg": alg, "typ": "JWT", "kid": "K1"}
    assert jwt.decode(token, key.public_key(), algorithms=[alg], audience="registry") == claims
    # A changed payload does not verify.
    head, _, rest = token.partition(".")
    forged = head + "." + rest[1:] if rest[0] != "e" else head + ".f" + rest[1:]
    with pytest.raises(jwt.InvalidTokenError):
        jwt.decode(forged, key.public_key(), algorithms=[alg], audience="registry")

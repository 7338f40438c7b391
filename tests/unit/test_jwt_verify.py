"""The one check every JWT verifier shares: the key fits the `alg`, and times are finite numbers."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authcore.jwk import ALGORITHMS, PublicKeyType
from authcore.jwt_verify import (
    KeyMismatch,
    MalformedTime,
    UntrustedJWT,
    decode_signed,
    key_fits,
    signed_header,
)

RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
P256 = ec.generate_private_key(ec.SECP256R1())
P384 = ec.generate_private_key(ec.SECP384R1())
P521 = ec.generate_private_key(ec.SECP521R1())
CLAIMS = {"iss": "i", "aud": "a", "sub": "s", "exp": 2_000_000_000, "iat": 1_000_000_000}

# Every value JSON (as Python reads it) can put in a time claim that is no time.
NOT_TIMES: list[Any] = [
    float("nan"),
    float("inf"),
    float("-inf"),
    True,
    False,
    None,
    "2000000000",
    [2_000_000_000],
    {"t": 1},
    10**400,  # finite, but past what a float (and so a clock) can compare
]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def relabelled(token: str, **header: Any) -> str:
    """The same payload and signature under a header that says something else."""
    head, body, signature = token.split(".")
    old = json.loads(base64.urlsafe_b64decode(head + "=="))
    return f"{_b64(json.dumps(old | header).encode())}.{body}.{signature}"


@pytest.mark.parametrize(
    ("alg", "key", "fits"),
    [
        ("RS256", RSA.public_key(), True),
        ("RS512", RSA.public_key(), True),
        ("ES256", P256.public_key(), True),
        ("ES384", P384.public_key(), True),
        ("ES512", P521.public_key(), True),
        ("ES256", RSA.public_key(), False),
        ("RS256", P256.public_key(), False),
        ("ES256", P384.public_key(), False),
        ("ES512", P256.public_key(), False),
        ("HS256", RSA.public_key(), False),
        ("PS256", RSA.public_key(), False),
        ("none", P256.public_key(), False),
    ],
)
def test_key_fits(alg: str, key: PublicKeyType, fits: bool) -> None:
    assert key_fits(alg, key) is fits


def test_every_algorithm_we_accept_has_a_key_that_fits() -> None:
    keys = [RSA.public_key(), P256.public_key(), P384.public_key(), P521.public_key()]
    for alg in ALGORITHMS:
        assert [key_fits(alg, key) for key in keys].count(True) == 1, alg


@pytest.mark.parametrize(
    ("signer", "alg", "verifier"),
    [
        (RSA, "RS256", P256.public_key()),  # RS256 over an EC key's kid
        (P256, "ES256", RSA.public_key()),  # ES256 over an RSA key's kid
    ],
)
def test_an_alg_that_does_not_fit_the_key_is_refused_not_a_type_error(
    signer: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, alg: str, verifier: PublicKeyType
) -> None:
    token = jwt.encode(CLAIMS, signer, algorithm=alg)
    with pytest.raises(KeyMismatch):
        decode_signed(token, verifier, alg)
    # Relabelled to the verifier's kind, the signature is simply wrong.
    other = "ES256" if alg == "RS256" else "RS256"
    with pytest.raises(UntrustedJWT, match="bad signature"):
        decode_signed(relabelled(token, alg=other), verifier, other)


def test_a_curve_that_does_not_fit_is_refused() -> None:
    token = jwt.encode(CLAIMS, P384, algorithm="ES384")
    with pytest.raises(KeyMismatch):
        decode_signed(relabelled(token, alg="ES256"), P384.public_key(), "ES256")


@pytest.mark.parametrize("alg", [["ES256"], {"a": 1}, None, 256, "none", "HS256", "EdDSA", ""])
def test_only_the_algorithms_we_accept_pass_the_header(alg: Any) -> None:
    token = relabelled(jwt.encode(CLAIMS, P256, algorithm="ES256"), alg=alg)
    with pytest.raises(UntrustedJWT, match="algorithm"):
        signed_header(token)


def test_a_malformed_header_is_refused() -> None:
    for token in ("", "a.b.c", "e30.e30.e30", f"{_b64(b'[1]')}.e30.AA"):
        with pytest.raises(UntrustedJWT):
            signed_header(token)


@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", NOT_TIMES, ids=lambda v: repr(v)[:12])
def test_a_time_that_is_no_finite_number_is_refused(name: str, value: Any) -> None:
    token = jwt.encode(CLAIMS | {name: value}, P256, algorithm="ES256")
    with pytest.raises(MalformedTime):
        decode_signed(token, P256.public_key(), "ES256")


def test_json_nan_and_infinity_as_an_issuer_would_spell_them() -> None:
    for spelling in ("NaN", "Infinity", "-Infinity"):
        payload = json.dumps(CLAIMS).replace("2000000000", spelling).encode()
        token = jwt.api_jws.encode(payload, P256, algorithm="ES256")
        with pytest.raises(MalformedTime):
            decode_signed(token, P256.public_key(), "ES256")


def test_times_come_out_as_floats_and_absent_ones_as_none() -> None:
    token = jwt.encode(CLAIMS | {"nbf": 999_999_999.5}, RSA, algorithm="RS256")
    signed = decode_signed(token, RSA.public_key(), "RS256", audience="a", issuer="i")
    assert (signed.exp, signed.nbf, signed.iat) == (2e9, 999_999_999.5, 1e9)
    assert signed.claims["sub"] == "s"
    bare = jwt.encode({"sub": "s"}, RSA, algorithm="RS256")
    signed = decode_signed(bare, RSA.public_key(), "RS256")
    assert (signed.exp, signed.nbf, signed.iat) == (None, None, None)


def test_issuer_audience_and_required_claims() -> None:
    token = jwt.encode(CLAIMS, P256, algorithm="ES256")
    key = P256.public_key()
    for kwargs in (
        {"issuer": "other"},
        {"audience": "other"},
        {"audience": ["x", "y"]},
        {"require": ("jti",)},
    ):
        with pytest.raises(UntrustedJWT):
            decode_signed(token, key, "ES256", **kwargs)  # type: ignore[arg-type]
    assert decode_signed(token, key, "ES256", audience=["x", "a"], require=("exp",)).exp == 2e9

"""The one JWT verifier: the key fits the `alg`, the size is bounded, the times are whole
finite numbers judged with one leeway, `iss` and `aud` are the expected ones."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authcore.jwk import ALGORITHMS, PublicKeyType
from authcore.jwt_verify import (
    MAX_TOKEN_BYTES,
    Expired,
    KeyMismatch,
    MalformedTime,
    NotYetValid,
    TokenTooLarge,
    UnknownKey,
    UntrustedJWT,
    WrongAudience,
    WrongIssuer,
    by_kid,
    decode_signed,
    key_fits,
    signed_header,
    verify_jwt,
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
    signed = decode_signed(token, RSA.public_key(), "RS256")
    assert (signed.exp, signed.nbf, signed.iat) == (2e9, 999_999_999.5, 1e9)
    assert signed.claims["sub"] == "s"
    bare = jwt.encode({"sub": "s"}, RSA, algorithm="RS256")
    signed = decode_signed(bare, RSA.public_key(), "RS256")
    assert (signed.exp, signed.nbf, signed.iat) == (None, None, None)


def test_required_claims() -> None:
    # `iss` and `aud` are verify_jwt's to judge: test_verify_jwt_refuses_other_issuers_... below.
    token = jwt.encode(CLAIMS, P256, algorithm="ES256")
    key = P256.public_key()
    with pytest.raises(UntrustedJWT):
        decode_signed(token, key, "ES256", require=("jti",))
    assert decode_signed(token, key, "ES256", require=("exp",)).exp == 2e9


# -- verify_jwt: what every product verifier calls -----------------------------

NOW = 1_500_000_000
LEEWAY = 60
GOOD = {"iss": "i", "aud": "a", "sub": "s", "exp": NOW + 300, "nbf": NOW, "iat": NOW}
KEYS = by_kid({"p256": P256.public_key(), "rsa": RSA.public_key()})


def _signed(claims: dict[str, Any], key: Any = P256, alg: str = "ES256", kid: str = "p256") -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def _verify(token: str, now: float = NOW, **kwargs: Any) -> dict[str, Any]:
    expected: dict[str, Any] = {"issuer": "i", "audience": "a"} | kwargs
    return verify_jwt(token, KEYS, leeway=LEEWAY, now=now, **expected).claims


def test_verify_jwt_answers_the_claims_of_a_good_token() -> None:
    assert _verify(_signed(GOOD))["sub"] == "s"
    assert _verify(_signed(GOOD, RSA, "RS256", "rsa"))["sub"] == "s"
    # One of several audiences, in a list or not.
    assert _verify(_signed(GOOD | {"aud": ["x", "a"]}), audience=("a", "b"))["sub"] == "s"
    assert _verify(_signed(GOOD), audience=frozenset({"b", "a"}))["sub"] == "s"


@pytest.mark.parametrize(
    ("claims", "expected", "refusal"),
    [
        (GOOD | {"iss": "other"}, {}, WrongIssuer),
        ({k: v for k, v in GOOD.items() if k != "iss"}, {}, WrongIssuer),
        (GOOD | {"aud": "other"}, {}, WrongAudience),
        (GOOD | {"aud": ["x", "y"]}, {}, WrongAudience),
        (GOOD | {"aud": [["a"]]}, {}, WrongAudience),
        ({k: v for k, v in GOOD.items() if k != "aud"}, {}, WrongAudience),
        (GOOD, {"audience": ("x", "y")}, WrongAudience),
        ({k: v for k, v in GOOD.items() if k != "exp"}, {}, UntrustedJWT),
        (GOOD, {"require": ("jti",)}, UntrustedJWT),
    ],
)
def test_verify_jwt_refuses_other_issuers_audiences_and_missing_claims(
    claims: dict[str, Any], expected: dict[str, Any], refusal: type[UntrustedJWT]
) -> None:
    with pytest.raises(refusal):
        _verify(_signed(claims), **expected)


@pytest.mark.parametrize(
    ("now", "refusal"),
    [
        (NOW + 300 + LEEWAY - 1, None),
        (NOW + 300 + LEEWAY, Expired),  # expired at exp + leeway, not a second later
        (NOW + 300 + LEEWAY + 1, Expired),
        (NOW - LEEWAY, None),
        (NOW - LEEWAY - 1, NotYetValid),  # nbf (and iat) in the future beyond the leeway
    ],
)
def test_verify_jwt_judges_the_times_with_one_leeway(
    now: int, refusal: type[UntrustedJWT] | None
) -> None:
    token = _signed(GOOD)
    if refusal is None:
        assert _verify(token, now=now)["sub"] == "s"
    else:
        with pytest.raises(refusal):
            _verify(token, now=now)


def test_verify_jwt_refuses_a_token_issued_in_the_future() -> None:
    token = _signed({k: v for k, v in GOOD.items() if k != "nbf"} | {"iat": NOW + 61})
    with pytest.raises(NotYetValid, match="issued in the future"):
        _verify(token)


@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
@pytest.mark.parametrize(
    "value", [*NOT_TIMES, NOW + 0.5, float(NOW + 100)], ids=lambda v: repr(v)[:12]
)
def test_verify_jwt_takes_only_whole_finite_times(name: str, value: Any) -> None:
    """Floats too: every issuer here and the Go registry write whole seconds."""
    # `exp: null` is a missing exp; any other non-time a malformed one.
    with pytest.raises(MalformedTime if value is not None else UntrustedJWT):
        _verify(_signed(GOOD | {name: value}))


@pytest.mark.parametrize(
    ("signer", "alg", "kid"),
    [(RSA, "RS256", "p256"), (P256, "ES256", "rsa"), (P384, "ES384", "p256")],
)
def test_verify_jwt_refuses_an_alg_that_does_not_fit_the_named_key(
    signer: Any, alg: str, kid: str
) -> None:
    with pytest.raises(KeyMismatch):
        _verify(_signed(GOOD, signer, alg, kid))


def test_verify_jwt_refuses_an_unknown_or_missing_kid() -> None:
    with pytest.raises(UnknownKey):
        _verify(_signed(GOOD, kid="other"))
    # No kid at all is no key to look for again: not an UnknownKey.
    for token in (
        _signed(GOOD, kid=""),
        _signed(GOOD, kid="k" * 300),
        jwt.encode(GOOD, P256, algorithm="ES256"),
    ):
        with pytest.raises(UntrustedJWT, match="no key id") as refused:
            _verify(token)
        assert not isinstance(refused.value, UnknownKey)


def test_verify_jwt_refuses_an_oversized_token_before_reading_it() -> None:
    token = _signed(GOOD | {"pad": "x" * MAX_TOKEN_BYTES})
    looked: list[object] = []

    def finder(header: Any) -> Any:
        looked.append(header)
        return P256.public_key()

    with pytest.raises(TokenTooLarge):
        verify_jwt(token, finder, issuer="i", audience="a", leeway=LEEWAY, now=NOW)
    assert looked == []
    fits = _signed(GOOD | {"pad": "x" * (MAX_TOKEN_BYTES * 3 // 4 - 300)})
    assert len(fits) <= MAX_TOKEN_BYTES and _verify(fits)["sub"] == "s"

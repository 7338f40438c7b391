"""Token verification against forged, foreign, stale and under-scoped tokens."""

from __future__ import annotations

import base64
import concurrent.futures
import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from authcore.scope import Access
from registry_proxy.auth import (
    AccessController,
    InvalidToken,
    VerifiedToken,
    challenge_header,
    verify_token,
)
from registry_proxy.errors import RegistryError
from registry_proxy.trust import KeyStore, TrustedKeys, load_bundle, parse_jwks
from tests.support.minter import Minter, log_problems
from tests.support.registry_proxy import RegistryProxy
from tests.support.trickle import TricklingServer
from tokenserver.issuer import Issuer
from tokenserver.jws import CompactSigner
from tokenserver.keys import KeySet, generate_key, load_keys


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
T0 = NOW.timestamp()
ISS, AUD = "issuer-1", "registry"


def pull(name: str) -> Access:
    return Access("repository", name, frozenset({"pull"}))


def push(name: str) -> Access:
    return Access("repository", name, frozenset({"pull", "push"}))


@pytest.fixture(scope="module")
def es_keys(tmp_path_factory: pytest.TempPathFactory) -> KeySet:
    d = tmp_path_factory.mktemp("es")
    generate_key(d, "ES256", now=NOW)
    return load_keys(d)


@pytest.fixture(scope="module")
def rs_keys(tmp_path_factory: pytest.TempPathFactory) -> KeySet:
    d = tmp_path_factory.mktemp("rs")
    generate_key(d, "RS256", now=NOW)
    return load_keys(d)


def trusted(keys: KeySet) -> TrustedKeys:
    return load_bundle(keys.signing.public.path.parent / "bundle.pem")


def issue(keys: KeySet, *access: Access, x5c: bool = False, iss: str = ISS, aud: str = AUD) -> str:
    return Issuer(keys, iss, 300, x5c=x5c).issue("alice", aud, list(access), NOW).token


def check(token: str, keys: TrustedKeys, now: float = T0) -> VerifiedToken:
    return verify_token(token, keys, issuer=ISS, audience=AUD, now=now, leeway=60)


@pytest.mark.parametrize("fixture", ["es_keys", "rs_keys"])
@pytest.mark.parametrize("x5c", [False, True])
def test_valid_tokens_verify(request: pytest.FixtureRequest, fixture: str, x5c: bool) -> None:
    keys: KeySet = request.getfixturevalue(fixture)
    verified = check(issue(keys, push("alice/app"), x5c=x5c), trusted(keys))
    assert verified.subject == "alice"
    assert verified.allows(pull("alice/app")) and verified.allows(push("alice/app"))
    assert not verified.allows(pull("alice/other"))
    assert not verified.allows(Access("repository", "alice/app", frozenset({"delete"})))


def test_star_covers_every_action() -> None:
    token = VerifiedToken("a", (Access("repository", "x", frozenset({"*"})),), 0)
    assert token.allows(Access("repository", "x", frozenset({"pull", "push", "delete"})))


def test_actions_split_over_entries_add_up() -> None:
    token = VerifiedToken("a", (pull("x"), Access("repository", "x", frozenset({"push"}))), 0)
    assert token.allows(push("x"))


@pytest.mark.parametrize(
    ("now", "ok"),
    [(T0 + 300 + 59, True), (T0 + 300 + 61, False), (T0 - 59, True), (T0 - 61, False)],
)
def test_expiry_and_not_before_with_leeway(es_keys: KeySet, now: float, ok: bool) -> None:
    token = issue(es_keys, pull("alice/app"))
    if ok:
        check(token, trusted(es_keys), now)
    else:
        with pytest.raises(InvalidToken):
            check(token, trusted(es_keys), now)


def test_wrong_issuer_and_audience_refused(es_keys: KeySet) -> None:
    with pytest.raises(InvalidToken, match="issuer"):
        check(issue(es_keys, iss="someone-else"), trusted(es_keys))
    with pytest.raises(InvalidToken, match="audience"):
        check(issue(es_keys, aud="other-registry"), trusted(es_keys))


def test_untrusted_key_refused(es_keys: KeySet, rs_keys: KeySet) -> None:
    with pytest.raises(InvalidToken):
        check(issue(rs_keys, pull("alice/app")), trusted(es_keys))
    # Its x5c chain does not lead to a trusted certificate either, nor its kid to a key.
    with pytest.raises(InvalidToken, match="trusted certificate, and no trusted key"):
        check(issue(rs_keys, pull("alice/app"), x5c=True), trusted(es_keys))


def _claims() -> dict[str, object]:
    return {"iss": ISS, "aud": AUD, "sub": "mallory", "exp": int(T0) + 300, "access": []}


def test_alg_none_and_hmac_with_public_key_refused(es_keys: KeySet) -> None:
    kid = es_keys.signing.kid
    unsigned = jwt.encode(_claims(), None, algorithm="none", headers={"kid": kid})
    with pytest.raises(InvalidToken, match="algorithm"):
        check(unsigned, trusted(es_keys))
    public_pem = es_keys.signing.public.key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # The classic confusion: the public key used as an HMAC secret.
    forged = _hs256(_claims(), public_pem, kid)
    with pytest.raises(InvalidToken, match="algorithm"):
        check(forged, trusted(es_keys))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256(claims: dict[str, object], secret: bytes, kid: str) -> str:
    import hashlib
    import hmac

    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = _b64(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


def test_algorithm_must_fit_the_key(es_keys: KeySet, rs_keys: KeySet) -> None:
    # An RSA-signed token that claims to be ES256 under the RSA key's kid.
    token = jwt.encode(
        _claims(), rs_keys.signing.private, algorithm="RS256", headers={"kid": rs_keys.signing.kid}
    )
    head, body, sig = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=="))
    header["alg"] = "ES256"
    relabelled = f"{_b64(json.dumps(header).encode())}.{body}.{sig}"
    with pytest.raises(InvalidToken):
        check(relabelled, trusted(rs_keys))


def test_an_ec_key_named_under_rs256_is_refused(es_keys: KeySet) -> None:
    """The reverse confusion: RS256 naming an EC key's kid (PyJWT's TypeError, before)."""
    forged = f"{_b64(json.dumps({'alg': 'RS256', 'kid': es_keys.signing.kid}).encode())}."
    forged += f"{_b64(json.dumps(_claims()).encode())}.{_b64(b'x' * 256)}"
    with pytest.raises(InvalidToken, match="does not fit"):
        check(forged, trusted(es_keys))


@pytest.mark.parametrize("alg", [["ES256"], {"ES256": 1}, 256, None])
def test_an_alg_that_is_not_a_string_is_refused(es_keys: KeySet, alg: object) -> None:
    header = {"typ": "JWT", "kid": es_keys.signing.kid}
    token = CompactSigner(es_keys.signing.private, "ES256", header).sign(_claims())
    _, body, sig = token.split(".")
    relabelled = f"{_b64(json.dumps(header | {'alg': alg}).encode())}.{body}.{sig}"
    with pytest.raises(InvalidToken, match="algorithm"):
        check(relabelled, trusted(es_keys))


@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), True, "9999999999", None, 10**400],
    ids=lambda v: repr(v)[:12],
)
def test_a_time_that_is_no_finite_number_is_refused(
    es_keys: KeySet, name: str, value: object
) -> None:
    """`exp: NaN` compared false with every time: it never expired (or was a 500 at int())."""
    signer = CompactSigner(es_keys.signing.private, "ES256", {"kid": es_keys.signing.kid})
    token = signer.sign(_claims() | {"nbf": int(T0), "iat": int(T0), name: value})
    with pytest.raises(InvalidToken):
        check(token, trusted(es_keys))


def test_tampered_claims_refused(es_keys: KeySet) -> None:
    head, body, sig = issue(es_keys, pull("alice/app")).split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["access"] = [{"type": "repository", "name": "bob/app", "actions": ["push"]}]
    with pytest.raises(InvalidToken, match="signature"):
        check(f"{head}.{_b64(json.dumps(claims).encode())}.{sig}", trusted(es_keys))


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "x" * 20000, "e30.e30.e30"])
def test_garbage_refused(es_keys: KeySet, garbage: str) -> None:
    with pytest.raises(InvalidToken):
        check(garbage, trusted(es_keys))


def test_malformed_access_claim_refused(es_keys: KeySet) -> None:
    claims = _claims() | {"access": [{"type": "repository", "name": 5}]}
    token = jwt.encode(
        claims, es_keys.signing.private, algorithm="ES256", headers={"kid": es_keys.signing.kid}
    )
    with pytest.raises(InvalidToken, match="access"):
        check(token, trusted(es_keys))


def test_jwks_keys_known_by_published_and_libtrust_kid(es_keys: KeySet) -> None:
    keys = parse_jwks(es_keys.jwks())
    assert es_keys.signing.kid in keys.by_kid
    check(issue(es_keys, pull("alice/app")), keys)


@pytest.mark.parametrize("fixture", ["es_keys", "rs_keys"])
def test_x5c_tokens_verify_against_a_jwks_alone(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    # The token server's default tokens carry both x5c and kid; with no certificates to
    # anchor the chain, the kid finds the key.
    keys: KeySet = request.getfixturevalue(fixture)
    jwks_only = parse_jwks(keys.jwks())
    assert jwks_only.roots == ()
    verified = check(issue(keys, pull("alice/app"), x5c=True), jwks_only)
    assert verified.allows(pull("alice/app"))


def test_an_x5c_that_leads_nowhere_falls_back_to_the_kid(es_keys: KeySet, rs_keys: KeySet) -> None:
    # Signed by a trusted key and named by its kid, but carrying a stranger's certificate.
    header = {"typ": "JWT", "kid": es_keys.signing.kid, "x5c": [rs_keys.signing.public.x5c]}
    signer = CompactSigner(es_keys.signing.private, "ES256", header)
    token = signer.sign(_claims())
    assert check(token, trusted(es_keys)).subject == "mallory"
    # The signature is checked with the key the kid names, never the certificate's.
    stranger = CompactSigner(rs_keys.signing.private, "RS256", header).sign(_claims())
    with pytest.raises(InvalidToken):
        check(stranger, trusted(es_keys))


def test_challenge_header_format() -> None:
    assert challenge_header("http://127.0.0.1:1/token", "registry", [], None) == (
        'Bearer realm="http://127.0.0.1:1/token",service="registry"'
    )
    header = challenge_header("r", "s", [push("a/b"), pull("c")], "insufficient_scope")
    assert header == (
        'Bearer realm="r",service="s",scope="repository:a/b:pull,push repository:c:pull",'
        'error="insufficient_scope"'
    )


@pytest.mark.anyio
async def test_controller_challenges(es_keys: KeySet) -> None:
    controller = AccessController(
        KeyStore(trusted(es_keys)), realm="R", service=AUD, issuer=ISS, clock=lambda: T0
    )
    token = issue(es_keys, pull("alice/app"))
    verified = await controller.authorize(f"Bearer {token}", [pull("alice/app")])
    assert verified.subject == "alice"

    with pytest.raises(RegistryError) as missing:
        await controller.authorize(None, [pull("alice/app")])
    assert missing.value.status == 401
    assert "error=" not in missing.value.headers["WWW-Authenticate"]

    with pytest.raises(RegistryError) as scope:
        await controller.authorize(f"Bearer {token}", [push("alice/app")])
    assert 'error="insufficient_scope"' in scope.value.headers["WWW-Authenticate"]
    assert 'scope="repository:alice/app:pull,push"' in scope.value.headers["WWW-Authenticate"]

    with pytest.raises(RegistryError) as bad:
        await controller.authorize("Bearer nonsense", [pull("alice/app")])
    assert 'error="invalid_token"' in bad.value.headers["WWW-Authenticate"]
    assert bad.value.body()["errors"][0]["code"] == "UNAUTHORIZED"


@pytest.mark.anyio
async def test_keystore_refresh_interval() -> None:
    now = [100.0]
    store = KeyStore(
        TrustedKeys(), jwks_url="http://127.0.0.1:9/jwks", min_refresh=30, clock=lambda: now[0]
    )
    # The URL refuses connections: the first attempt is made, the next one is held back.
    assert await store.refresh() is False
    assert store.remote is not None and store.remote.fetched_at == 100.0
    now[0] = 110.0
    assert await store.refresh() is False
    assert store.remote is not None and store.remote.fetched_at == 100.0
    now[0] = 131.0
    await store.refresh()
    assert store.remote is not None and store.remote.fetched_at == 131.0


# The README's deadline for a whole fetch of the JWKS URL.
JWKS_DEADLINE = 5.0


def _wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.peers
def test_a_trickling_jwks_url_is_a_401_in_time_and_v2_stays_answered(tmp_path: Path) -> None:
    """A JWKS URL that, after its first answer, sends a byte a second.

    A real registry process refetches it for every unknown kid
    (`jwks_min_refresh: 0`); 20 requests with tokens of an unknown key get
    their 401 within a few times the deadline, from one fetch, and `GET /v2/`
    with a good token is answered meanwhile.
    """
    minter, stranger = Minter(tmp_path / "keys"), Minter(tmp_path / "stranger")
    with TricklingServer(interval=1.0, limit=40, prompt=1) as jwks:
        auth = minter.token_auth | {"jwks": jwks.url, "jwks_min_refresh": 0}
        with RegistryProxy(tmp_path / "rp", auth) as registry:
            assert jwks.connections == 1  # the fetch at start, answered at once

            def unknown_key(_: int) -> tuple[int, float]:
                started = time.monotonic()
                got = httpx.get(
                    f"{registry.url}/v2/",
                    headers=stranger.headers(),
                    timeout=4 * JWKS_DEADLINE,
                )
                return got.status_code, time.monotonic() - started

            with concurrent.futures.ThreadPoolExecutor(20) as pool:
                refused = [pool.submit(unknown_key, i) for i in range(20)]
                assert _wait_for(lambda: jwks.trickling > 0, 10), "the JWKS was never asked for"
                good = httpx.get(
                    f"{registry.url}/v2/", headers=minter.headers(), timeout=2 * JWKS_DEADLINE
                )
                assert good.status_code == 200, good.text
                assert jwks.trickling > 0, "answered only once the fetch was over"
                for answer in refused:
                    status, elapsed = answer.result()
                    assert status == 401
                    assert elapsed < 3 * JWKS_DEADLINE, elapsed
            assert jwks.connections == 2  # one fetch for all 20
            # Ended by its deadline, not by the trickle.
            assert _wait_for(lambda: jwks.trickling == 0, 3 * JWKS_DEADLINE)
            assert "JWKS fetch failed" in registry.log_text()
        problems = log_problems(registry.log_text())
        assert not problems, "\n".join(problems[:5])

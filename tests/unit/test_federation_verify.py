"""ID-token verification against a local issuer shaped like GitHub's, GitLab's and Kubernetes'."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from authcore.identity import ScopeLimit
from tests.support.oidc import OIDCIssuer, SigningKey, forged_hs256, forged_none
from tokenserver.authz.patterns import Pattern
from tokenserver.federation.trusts import Trust
from tokenserver.federation.verify import (
    REFETCH_INTERVAL,
    InvalidIDToken,
    IssuerKeys,
    KeysUnavailable,
    Verifier,
)

AUDIENCE = "https://registry.example"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OIDCIssuer]:
    with OIDCIssuer(tmp_path_factory.mktemp("oidc")) as running:
        yield running


class Clock:
    def __init__(self) -> None:
        self.monotonic = 1000.0

    def wall(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def mono(self) -> float:
        return self.monotonic


def _verifier(
    oidc: OIDCIssuer, clock: Clock | None = None, **trust: object
) -> tuple[Verifier, IssuerKeys]:
    clock = clock or Clock()
    settings: dict[str, object] = {
        "name": "gha-team-app",
        "issuer": oidc.url,
        "audience": AUDIENCE,
        "scopes": ScopeLimit.parse(["repository:team/app:pull,push"]),
        "claims": {"repository": Pattern("org/app"), "ref": Pattern("refs/heads/main")},
        "ca_file": oidc.ca_file,
    } | trust
    built = Trust(**settings)  # type: ignore[arg-type]
    keys = IssuerKeys(built.issuer, jwks_uri=built.jwks_uri, jwks_file=built.jwks_file,
                     ca_file=built.ca_file, clock=clock.mono)  # fmt: skip
    return Verifier(built, keys, clock.wall), keys


def test_each_platforms_token_shape(issuer: OIDCIssuer) -> None:
    github, _ = _verifier(issuer)
    verified = github.verify(issuer.sign(issuer.github_actions(AUDIENCE)))
    assert verified.subject == "repo:org/app:ref:refs/heads/main"
    assert verified.matched == {"repository": "org/app", "ref": "refs/heads/main"}
    assert verified.trust == "gha-team-app" and verified.issuer == issuer.url and verified.jti

    gitlab, _ = _verifier(
        issuer, name="gl-app", claims={"project_path": Pattern("group/*"), "ref": Pattern("main")}
    )
    verified = gitlab.verify(issuer.sign(issuer.gitlab_ci(AUDIENCE)))
    assert verified.subject == "project_path:group/app:ref_type:branch:ref:main"

    cluster, _ = _verifier(
        issuer, name="k8s-ci", claims={"sub": Pattern("system:serviceaccount:ci:*")}
    )
    verified = cluster.verify(issuer.sign(issuer.kubernetes(AUDIENCE)))
    assert verified.subject == "system:serviceaccount:ci:builder"


def test_every_wrong_token_is_refused(issuer: OIDCIssuer) -> None:
    verifier, _ = _verifier(issuer)
    now = time.time()
    good = issuer.github_actions(AUDIENCE)
    cases = {
        "wrong audience": issuer.sign(issuer.github_actions("https://elsewhere")),
        "wrong issuer": issuer.sign(good | {"iss": "https://token.actions.githubusercontent.com"}),
        "expired": issuer.sign(good | {"exp": int(now) - 120}),
        "future nbf": issuer.sign(good | {"nbf": int(now) + 600}),
        "future iat": issuer.sign(good | {"iat": int(now) + 600}),
        "too old": issuer.sign(issuer.github_actions(AUDIENCE, issued=now - 7200, lifetime=9000)),
        "wrong branch": issuer.sign(issuer.github_actions(AUDIENCE, ref="refs/heads/feature")),
        "other repository": issuer.sign(issuer.github_actions(AUDIENCE, repository="org/other")),
        "claim not a string": issuer.sign(good | {"ref": ["refs/heads/main"]}),
        "no sub": issuer.sign({k: v for k, v in good.items() if k != "sub"}),
        "exp not a number": issuer.sign(good | {"exp": "tomorrow"}),
        "unknown key": issuer.sign(good, key=SigningKey("RS256")),
        "alg none": forged_none(good),
        "not a jwt": "hunter2",
        "huge": "eyJ" + "a" * 20000 + ".b.c",
    }
    key = issuer.keys[-1]
    for secret in (
        key.private.public_key().public_bytes(*_pem_public_format()),
        json.dumps(key.jwk()).encode(),
    ):
        cases[f"HS256 with {secret[:10]!r}"] = forged_hs256(good, secret, key.kid)
    for what, token in cases.items():
        with pytest.raises(InvalidIDToken):
            verifier.verify(token)
        assert what


def _pem_public_format() -> tuple[object, object]:
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo


def test_a_rotated_key_is_fetched_but_not_more_than_once_a_minute(
    tmp_path: Path,
) -> None:
    clock = Clock()
    with OIDCIssuer(tmp_path / "rotating") as issuer:
        verifier, _ = _verifier(issuer, clock)
        verifier.verify(issuer.sign(issuer.github_actions(AUDIENCE)))
        fetched = issuer.jwks_fetches
        assert issuer.discovery_fetches == 1  # the JWKS was found through discovery
        new_key = issuer.rotate("ES256")
        token = issuer.sign(issuer.github_actions(AUDIENCE), key=new_key)
        clock.monotonic += 1  # a fetch happened a second ago: no new one yet
        with pytest.raises(InvalidIDToken):
            verifier.verify(token)
        for _ in range(20):  # forged key ids do not make us ask again
            with pytest.raises(InvalidIDToken):
                verifier.verify(issuer.sign(issuer.github_actions(AUDIENCE), key=SigningKey()))
        assert issuer.jwks_fetches == fetched
        clock.monotonic += REFETCH_INTERVAL
        assert verifier.verify(token).subject.startswith("repo:org/app")
        assert issuer.jwks_fetches == fetched + 1


def test_keys_from_a_file_and_an_unreachable_issuer(issuer: OIDCIssuer, tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(issuer.jwks()))
    offline, _ = _verifier(issuer, jwks_file=jwks, ca_file=None)
    before = issuer.jwks_fetches
    assert offline.verify(issuer.sign(issuer.github_actions(AUDIENCE))).subject
    assert issuer.jwks_fetches == before

    gone, _ = _verifier(issuer, issuer="https://127.0.0.1:9/nowhere")
    with pytest.raises(KeysUnavailable):
        gone.verify(issuer.sign(issuer.github_actions(AUDIENCE)))
    # Without the test CA the issuer's certificate is not trusted: no keys, never a login.
    untrusted, _ = _verifier(issuer, ca_file=None)
    with pytest.raises(KeysUnavailable):
        untrusted.verify(issuer.sign(issuer.github_actions(AUDIENCE)))
    plain, _ = _verifier(issuer, jwks_uri=issuer.url.replace("https", "http") + "/jwks")
    with pytest.raises(KeysUnavailable):
        plain.verify(issuer.sign(issuer.github_actions(AUDIENCE)))


def test_an_alg_that_does_not_fit_the_named_key_is_a_wrong_token(tmp_path: Path) -> None:
    """ES256 naming the issuer's RSA key, RS256 naming its EC key: refused, never a TypeError."""
    with OIDCIssuer(tmp_path / "two-kinds") as issuer:
        rsa_key, ec_key = issuer.keys[0], SigningKey("ES256")
        issuer.keys.append(ec_key)
        verifier, _ = _verifier(issuer)
        claims = issuer.github_actions(AUDIENCE)
        for key in (rsa_key, ec_key):
            assert verifier.verify(issuer.sign(claims, key=key)).subject  # both keys are good
        for signer, named in ((ec_key, rsa_key), (rsa_key, ec_key)):
            token = issuer.sign(claims, key=signer, headers={"kid": named.kid})
            with pytest.raises(InvalidIDToken, match="does not fit"):
                verifier.verify(token)


@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), True, "1", None, 10**400], ids=lambda v: repr(v)[:12]
)
def test_a_time_that_is_no_finite_number_is_a_wrong_token(
    issuer: OIDCIssuer, name: str, value: object
) -> None:
    verifier, _ = _verifier(issuer)
    token = issuer.sign(issuer.github_actions(AUDIENCE) | {name: value})
    with pytest.raises(InvalidIDToken):
        verifier.verify(token)

"""Token auth on the registry side: challenges, invalid tokens, and the actions each call needs."""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.registry_client import (
    RegistryClient,
    error_codes,
    parse_challenge,
    parse_scopes,
    sha256_digest,
)
from tokenserver.keys import load_keys

if TYPE_CHECKING:
    from tests.conformance.conftest import Target

pytestmark = pytest.mark.e2e

API_VERSION = "registry/2.0"


def challenge_of(response: httpx.Response) -> dict[str, str]:
    """The Bearer challenge of a 401, checked for the form SPEC D14 requires."""
    assert response.status_code == 401, response.text
    header = response.headers["www-authenticate"]
    scheme, params = parse_challenge(header)
    assert scheme == "Bearer"
    # Every parameter value is quoted.
    assert re.fullmatch(r'Bearer [a-z]+="[^"]*"(,[a-z]+="[^"]*")*', header), header
    assert codes_are(response, "UNAUTHORIZED")
    return params


def codes_are(response: httpx.Response, *codes: str) -> bool:
    found = error_codes(response)
    return bool(found) and set(found) <= set(codes)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_base_without_token_is_challenged_without_scope(target: Target, raw: httpx.Client) -> None:
    response = raw.get("/v2/")
    params = challenge_of(response)
    assert params["realm"] == target.tokens.realm
    assert params["service"] == target.tokens.service
    assert "scope" not in params
    assert "error" not in params
    body = response.json()
    assert isinstance(body["errors"][0]["message"], str)
    assert response.headers["docker-distribution-api-version"] == API_VERSION


def test_base_with_token_answers_200(target: Target) -> None:
    response = target.client("alice").get("/v2/")
    assert response.status_code == 200
    assert response.headers["docker-distribution-api-version"] == API_VERSION


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/tags/list"),
        ("GET", "/manifests/latest"),
        ("HEAD", "/manifests/latest"),
        ("GET", "/blobs/" + sha256_digest(b"x")),
        ("HEAD", "/blobs/" + sha256_digest(b"x")),
    ],
)
def test_pull_without_rights_is_insufficient_scope(target: Target, method: str, path: str) -> None:
    response = target.client("alice").request(method, f"/v2/bob/app{path}")
    assert response.status_code == 401
    _, params = parse_challenge(response.headers["www-authenticate"])
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == "repository:bob/app:pull"
    assert params["realm"] == target.tokens.realm
    assert params["service"] == target.tokens.service
    if method == "GET":
        challenge_of(response)


def test_pull_with_token_for_another_repository_is_insufficient(
    target: Target, raw: httpx.Client
) -> None:
    token = target.token("alice", "repository:alice/other:pull")
    response = raw.get("/v2/alice/mine/tags/list", headers=bearer(token))
    params = challenge_of(response)
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == "repository:alice/mine:pull"


# --- Invalid tokens ---------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(target: Target, name: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": target.tokens.issuer,
        "sub": "alice",
        "aud": target.tokens.service,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now - 10,
        "jti": secrets.token_urlsafe(12),
        "access": [{"type": "repository", "name": name, "actions": ["pull"]}],
    }
    claims.update(overrides)
    return claims


def _sign(target: Target, claims: dict[str, Any], key: Any = None) -> str:
    signing = load_keys(target.tokens.keys_dir).signing
    headers = {"typ": "JWT", "kid": signing.kid}
    return jwt.encode(claims, key or signing.private, algorithm=signing.alg, headers=headers)


def _untrusted(target: Target, name: str) -> str:
    return _sign(target, _claims(target, name), ec.generate_private_key(ec.SECP256R1()))


def _tampered(target: Target, name: str) -> str:
    header, _, signature = _sign(target, _claims(target, "alice/elsewhere")).split(".")
    return ".".join([header, _b64(json.dumps(_claims(target, name)).encode()), signature])


def _alg_none(target: Target, name: str) -> str:
    header = _b64(json.dumps({"typ": "JWT", "alg": "none"}).encode())
    return f"{header}.{_b64(json.dumps(_claims(target, name)).encode())}."


def _expired(target: Target, name: str) -> str:
    now = int(time.time())
    return _sign(target, _claims(target, name, exp=now - 600, nbf=now - 900, iat=now - 900))


def _not_yet_valid(target: Target, name: str) -> str:
    now = int(time.time())
    return _sign(target, _claims(target, name, exp=now + 900, nbf=now + 600, iat=now + 600))


FORGERIES: dict[str, Callable[[Target, str], str]] = {
    "garbage": lambda t, n: "garbage",
    "three-garbage-parts": lambda t, n: "a.b.c",
    "untrusted-key": _untrusted,
    "tampered-payload": _tampered,
    "alg-none": _alg_none,
    "expired": _expired,
    "not-yet-valid": _not_yet_valid,
    "wrong-audience": lambda t, n: _sign(t, _claims(t, n, aud="another-service")),
    "wrong-issuer": lambda t, n: _sign(t, _claims(t, n, iss="another-issuer")),
}


def test_a_well_formed_token_signed_by_the_trusted_key_is_accepted(
    target: Target, raw: httpx.Client
) -> None:
    # The forgeries below differ from this one in one point each.
    response = raw.get(
        "/v2/alice/forged/tags/list", headers=bearer(_sign(target, _claims(target, "alice/forged")))
    )
    assert response.status_code == 404
    assert codes_are(response, "NAME_UNKNOWN")


@pytest.mark.parametrize("forgery", FORGERIES)
def test_invalid_token_is_rejected_as_invalid_token(
    target: Target, raw: httpx.Client, forgery: str
) -> None:
    token = FORGERIES[forgery](target, "alice/forged")
    response = raw.get("/v2/alice/forged/tags/list", headers=bearer(token))
    params = challenge_of(response)
    assert params["error"] == "invalid_token"
    assert params["realm"] == target.tokens.realm
    assert params["service"] == target.tokens.service


def test_invalid_token_on_base_is_rejected_as_invalid_token(raw: httpx.Client) -> None:
    params = challenge_of(raw.get("/v2/", headers=bearer("garbage")))
    assert params["error"] == "invalid_token"


# --- Actions each call needs -------------------------------------------------


@pytest.mark.parametrize(
    "granted",
    [("pull",), ("push",)],
    ids=["pull-only", "push-only"],
)
def test_push_needs_pull_and_push(
    target: Target, raw: httpx.Client, repo: str, granted: tuple[str, ...]
) -> None:
    token = target.token("alice", f"repository:{repo}:{','.join(granted)}")
    response = raw.post(f"/v2/{repo}/blobs/uploads/", headers=bearer(token))
    params = challenge_of(response)
    assert params["error"] == "insufficient_scope"
    assert parse_scopes(params["scope"]) == {("repository", repo): {"pull", "push"}}

    token = target.token("alice", f"repository:{repo}:pull,push")
    response = raw.post(f"/v2/{repo}/blobs/uploads/", headers=bearer(token))
    assert response.status_code == 202


def test_manifest_push_needs_pull_and_push(
    target: Target, raw: httpx.Client, alice: RegistryClient, repo: str
) -> None:
    image = alice.push_image(repo)
    token = target.token("alice", f"repository:{repo}:pull")
    response = raw.put(
        f"/v2/{repo}/manifests/v2",
        content=image.manifest,
        headers={**bearer(token), "Content-Type": image.media_type},
    )
    params = challenge_of(response)
    assert params["error"] == "insufficient_scope"
    assert parse_scopes(params["scope"]) == {("repository", repo): {"pull", "push"}}


@pytest.mark.parametrize("kind", ["blob", "manifest"])
def test_delete_needs_delete(
    target: Target, raw: httpx.Client, alice: RegistryClient, repo: str, kind: str
) -> None:
    image = alice.push_image(repo, "v1")
    path = (
        f"/v2/{repo}/blobs/{image.blob_digests[-1]}"
        if kind == "blob"
        else (f"/v2/{repo}/manifests/{image.digest}")
    )
    token = target.token("alice", f"repository:{repo}:pull,push")
    params = challenge_of(raw.delete(path, headers=bearer(token)))
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == f"repository:{repo}:delete"

    token = target.token("alice", f"repository:{repo}:delete")
    assert raw.delete(path, headers=bearer(token)).status_code == 202


def test_catalog_needs_registry_catalog(target: Target, admin: RegistryClient) -> None:
    response = target.client("alice").get("/v2/_catalog")
    params = challenge_of(response)
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == "registry:catalog:*"

    response = admin.catalog()
    assert response.status_code == 200
    assert isinstance(response.json()["repositories"], list)


def test_mount_needs_pull_on_the_source(
    target: Target, alice: RegistryClient, admin: RegistryClient, repo: str
) -> None:
    digest = admin.push_blob("bob/mount-source", secrets.token_bytes(64))
    # Alice asks for both scopes, as clients do; she is granted only her own.
    response = alice.mount_blob(repo, digest, "bob/mount-source")
    if response.status_code == 401:
        # Challenged for every scope the call needs, the source's pull included...
        params = challenge_of(response)
        assert params["error"] == "insufficient_scope"
        assert parse_scopes(params["scope"]) == {
            ("repository", repo): {"pull", "push"},
            ("repository", "bob/mount-source"): {"pull"},
        }
    else:
        # ...or not mounted: a plain upload session instead (SPEC E18).
        assert response.status_code == 202, response.text
        assert response.headers["location"]
    assert alice.head_blob(repo, digest).status_code == 404

    # With pull on the source (an admin may do anything) the mount succeeds.
    response = admin.mount_blob("admin/mount-target", digest, "bob/mount-source")
    assert response.status_code == 201
    assert response.headers["docker-content-digest"] == digest
    assert admin.head_blob("admin/mount-target", digest).status_code == 200

"""Every response carries `Docker-Distribution-Api-Version: registry/2.0` (SPEC E17)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.registry_client import OCI_MANIFEST, RegistryClient, sha256_digest

if TYPE_CHECKING:
    from tests.conformance.conftest import Target

pytestmark = pytest.mark.e2e

API_VERSION = "registry/2.0"


Call = Callable[[RegistryClient, httpx.Client, str], httpx.Response]
MISSING = sha256_digest(b"missing")


def _bad_upload_put(alice: RegistryClient, repo: str) -> httpx.Response:
    location = alice.start_upload(repo).headers["location"]
    return alice.http.put(alice.resolve(location, digest="sha256:x"))


# name: (expected status, call)
CALLS: dict[str, tuple[int, Call]] = {
    "base-unauthenticated": (401, lambda a, raw, r: raw.get("/v2/")),
    "base": (200, lambda a, raw, r: a.http.get("/v2/")),
    "invalid-token": (
        401,
        lambda a, raw, r: raw.get("/v2/", headers={"Authorization": "Bearer x"}),
    ),
    "insufficient-scope": (401, lambda a, raw, r: a.tags("bob/app")),
    "catalog-denied": (401, lambda a, raw, r: a.catalog()),
    "blob-unknown": (404, lambda a, raw, r: a.get_blob(r, MISSING)),
    "blob-head-unknown": (404, lambda a, raw, r: a.head_blob(r, MISSING)),
    "upload-start": (202, lambda a, raw, r: a.start_upload(r)),
    "upload-bad-digest": (400, lambda a, raw, r: _bad_upload_put(a, r)),
    "manifest-put": (
        201,
        lambda a, raw, r: a.put_manifest(r, "v9", a.push_image(r).manifest, OCI_MANIFEST),
    ),
    "manifest-get": (200, lambda a, raw, r: a.get_manifest(r, "v1")),
    "manifest-head": (200, lambda a, raw, r: a.head_manifest(r, "v1")),
    "manifest-unknown": (404, lambda a, raw, r: a.get_manifest(r, "nosuchtag")),
    "manifest-invalid": (400, lambda a, raw, r: a.put_manifest(r, "v2", b"{", OCI_MANIFEST)),
    "manifest-delete": (
        202,
        lambda a, raw, r: a.delete_manifest(r, a.push_image(r, "gone").digest),
    ),
    "tags": (200, lambda a, raw, r: a.tags(r)),
    "tags-unknown": (404, lambda a, raw, r: a.tags(r + "-nowhere")),
    "blob-delete": (202, lambda a, raw, r: a.delete_blob(r, a.push_blob(r, b"to delete"))),
}


@pytest.fixture(scope="module")
def version_repo(target: Target) -> str:
    repo = "alice/api-version"
    target.registry("alice").push_image(repo, "v1")
    return repo


@pytest.mark.parametrize("call", CALLS)
def test_response_carries_the_api_version_header(
    target: Target, version_repo: str, call: str
) -> None:
    status, send = CALLS[call]
    response = send(target.registry("alice"), target.raw(), version_repo)
    assert response.status_code == status, response.text
    assert response.headers.get("docker-distribution-api-version") == API_VERSION

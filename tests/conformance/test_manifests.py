"""Manifests: push by tag and digest, exact bytes and media types back, errors, deletes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.registry_client import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    EMPTY_JSON,
    MANIFEST_MEDIA_TYPES,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    RegistryClient,
    descriptor,
    docker_manifest,
    docker_manifest_list,
    error_codes,
    json_bytes,
    oci_index,
    oci_manifest,
    random_bytes,
    sha256_digest,
)

if TYPE_CHECKING:
    from tests.conformance.conftest import Target

pytestmark = pytest.mark.e2e

PLATFORM = {"architecture": "amd64", "os": "linux"}


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert code in error_codes(response), response.text


def _oci_manifest(client: RegistryClient, repo: str) -> tuple[bytes, str]:
    image = client.push_image(repo, media_type=OCI_MANIFEST)
    # A second manifest over the same blobs, with annotations, so bytes are distinctive.
    body = oci_manifest(
        descriptor(OCI_CONFIG, image.config),
        [descriptor(OCI_LAYER, layer) for layer in image.layers],
        annotations={"org.example.note": "conformance"},
    )
    return body, OCI_MANIFEST


def _oci_index(client: RegistryClient, repo: str) -> tuple[bytes, str]:
    image = client.push_image(repo, media_type=OCI_MANIFEST)
    other = client.push_image(repo, media_type=OCI_MANIFEST)
    body = oci_index(
        [
            descriptor(OCI_MANIFEST, image.manifest, platform=PLATFORM),
            descriptor(OCI_MANIFEST, other.manifest, platform={**PLATFORM, "os": "windows"}),
        ],
        annotations={"org.example.note": "index"},
    )
    return body, OCI_INDEX


def _docker_manifest(client: RegistryClient, repo: str) -> tuple[bytes, str]:
    config, layer = random_bytes(64), random_bytes(512)
    client.push_blob(repo, config)
    client.push_blob(repo, layer)
    body = docker_manifest(descriptor(DOCKER_CONFIG, config), [descriptor(DOCKER_LAYER, layer)])
    return body, DOCKER_MANIFEST


def _docker_manifest_list(client: RegistryClient, repo: str) -> tuple[bytes, str]:
    image = client.push_image(repo, media_type=DOCKER_MANIFEST)
    body = docker_manifest_list([descriptor(DOCKER_MANIFEST, image.manifest, platform=PLATFORM)])
    return body, DOCKER_MANIFEST_LIST


KINDS: dict[str, Callable[[RegistryClient, str], tuple[bytes, str]]] = {
    "oci-manifest": _oci_manifest,
    "oci-index": _oci_index,
    "docker-manifest": _docker_manifest,
    "docker-manifest-list": _docker_manifest_list,
}


def assert_created(client: RegistryClient, response: httpx.Response, body: bytes) -> None:
    assert response.status_code == 201, response.text
    assert response.headers["docker-content-digest"] == sha256_digest(body)
    # The Location is a pullable manifest URL.
    pulled = client.http.get(
        client.resolve(response.headers["location"]),
        headers={"Accept": ", ".join(MANIFEST_MEDIA_TYPES)},
    )
    assert pulled.status_code == 200
    assert pulled.content == body


def assert_served(response: httpx.Response, body: bytes, media_type: str, *, head: bool) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    assert response.headers["docker-content-digest"] == sha256_digest(body)
    assert int(response.headers["content-length"]) == len(body)
    assert response.content == (b"" if head else body)


@pytest.mark.parametrize("kind", KINDS)
def test_put_by_tag(alice: RegistryClient, repo: str, kind: str) -> None:
    body, media_type = KINDS[kind](alice, repo)
    response = alice.put_manifest(repo, "v1", body, media_type)
    assert_created(alice, response, body)


@pytest.mark.parametrize("kind", KINDS)
def test_put_by_digest(alice: RegistryClient, repo: str, kind: str) -> None:
    body, media_type = KINDS[kind](alice, repo)
    response = alice.put_manifest(repo, sha256_digest(body), body, media_type)
    assert_created(alice, response, body)


@pytest.mark.parametrize("accept", ["exact", "all"])
@pytest.mark.parametrize("kind", KINDS)
def test_get_and_head_return_the_exact_bytes_and_type(
    alice: RegistryClient, repo: str, kind: str, accept: str
) -> None:
    body, media_type = KINDS[kind](alice, repo)
    alice.push_manifest(repo, "v1", body, media_type)
    types = [media_type] if accept == "exact" else list(reversed(MANIFEST_MEDIA_TYPES))
    for ref in ("v1", sha256_digest(body)):
        assert_served(alice.get_manifest(repo, ref, types), body, media_type, head=False)
        assert_served(alice.head_manifest(repo, ref, types), body, media_type, head=True)


@pytest.mark.parametrize("accept", ["*/*", "application/json", "text/plain"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_stored_manifest_is_never_rewritten(
    alice: RegistryClient, repo: str, kind: str, accept: str
) -> None:
    body, media_type = KINDS[kind](alice, repo)
    alice.push_manifest(repo, "v1", body, media_type)
    response = alice.http.get(f"/v2/{repo}/manifests/v1", headers={"Accept": accept})
    # Content negotiation may refuse, but what is served is the stored manifest.
    if response.status_code == 200:
        assert_served(response, body, media_type, head=False)
    else:
        assert 400 <= response.status_code < 500, response.text


def test_pushing_a_tag_again_moves_it(alice: RegistryClient, repo: str) -> None:
    first = alice.push_image(repo, "latest")
    second = alice.push_image(repo, "latest")
    response = alice.get_manifest(repo, "latest")
    assert response.content == second.manifest
    # The old manifest is still there by digest.
    assert alice.get_manifest(repo, first.digest).content == first.manifest


def test_missing_subject_is_allowed(alice: RegistryClient, repo: str) -> None:
    alice.push_blob(repo, EMPTY_JSON)
    body = oci_manifest(
        descriptor(OCI_EMPTY, EMPTY_JSON),
        [descriptor(OCI_EMPTY, EMPTY_JSON)],
        subject=descriptor(OCI_MANIFEST, b"a manifest nobody pushed"),
        artifact_type="application/vnd.example.signature",
    )
    response = alice.put_manifest(repo, sha256_digest(body), body, OCI_MANIFEST)
    assert_created(alice, response, body)


def _missing_layer(client: RegistryClient, repo: str) -> tuple[bytes, str]:
    config = random_bytes(32)
    client.push_blob(repo, config)
    layers = [descriptor(OCI_LAYER, b"never pushed")]
    return oci_manifest(descriptor(OCI_CONFIG, config), layers), OCI_MANIFEST


def _missing_config(client: RegistryClient, repo: str) -> tuple[bytes, str]:
    layer = random_bytes(32)
    client.push_blob(repo, layer)
    return (
        oci_manifest(descriptor(OCI_CONFIG, b"never pushed"), [descriptor(OCI_LAYER, layer)]),
        OCI_MANIFEST,
    )


def _missing_docker_layer(client: RegistryClient, repo: str) -> tuple[bytes, str]:
    config = random_bytes(32)
    client.push_blob(repo, config)
    layers = [descriptor(DOCKER_LAYER, b"never pushed")]
    return docker_manifest(descriptor(DOCKER_CONFIG, config), layers), DOCKER_MANIFEST


def _missing_child(client: RegistryClient, repo: str) -> tuple[bytes, str]:
    client.push_image(repo)
    return oci_index([descriptor(OCI_MANIFEST, b"no such manifest", platform=PLATFORM)]), OCI_INDEX


MISSING = {
    "oci-layer": _missing_layer,
    "oci-config": _missing_config,
    "docker-layer": _missing_docker_layer,
    "index-child": _missing_child,
}


@pytest.mark.parametrize("missing", MISSING)
def test_reference_to_a_missing_blob_is_manifest_blob_unknown(
    alice: RegistryClient, repo: str, missing: str
) -> None:
    body, media_type = MISSING[missing](alice, repo)
    response = alice.put_manifest(repo, "v1", body, media_type)
    assert_error(response, 400, "MANIFEST_BLOB_UNKNOWN")
    assert alice.get_manifest(repo, "v1").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"',
    ],
    ids=["garbage", "truncated"],
)
def test_invalid_json_is_manifest_invalid(alice: RegistryClient, repo: str, body: bytes) -> None:
    alice.push_image(repo)
    assert_error(alice.put_manifest(repo, "v1", body, OCI_MANIFEST), 400, "MANIFEST_INVALID")


def test_digest_in_path_must_match_the_body(alice: RegistryClient, repo: str) -> None:
    body, media_type = _oci_manifest(alice, repo)
    wrong = sha256_digest(body + b" ")
    response = alice.put_manifest(repo, wrong, body, media_type)
    assert_error(response, 400, "DIGEST_INVALID")
    assert alice.get_manifest(repo, wrong).status_code == 404


def test_unknown_manifest(alice: RegistryClient, repo: str) -> None:
    alice.push_image(repo, "v1")
    for ref in ("nosuchtag", sha256_digest(b"nothing")):
        assert_error(alice.get_manifest(repo, ref), 404, "MANIFEST_UNKNOWN")
        assert alice.head_manifest(repo, ref).status_code == 404


def test_manifest_in_an_unknown_repository(alice: RegistryClient, repo: str) -> None:
    for ref in ("latest", sha256_digest(b"nothing")):
        response = alice.get_manifest(repo, ref)
        assert response.status_code == 404
        assert set(error_codes(response)) & {"MANIFEST_UNKNOWN", "NAME_UNKNOWN"}


def test_delete_by_digest_removes_the_manifest_and_its_tags(
    alice: RegistryClient, repo: str
) -> None:
    image = alice.push_image(repo, "v1")
    alice.push_manifest(repo, "v2", image.manifest, image.media_type)
    keep = alice.push_image(repo, "keep")

    assert alice.delete_manifest(repo, image.digest).status_code == 202
    assert_error(alice.get_manifest(repo, image.digest), 404, "MANIFEST_UNKNOWN")
    assert alice.head_manifest(repo, image.digest).status_code == 404
    for tag in ("v1", "v2"):
        assert_error(alice.get_manifest(repo, tag), 404, "MANIFEST_UNKNOWN")
    tags = alice.tags(repo)
    assert tags.status_code == 200
    assert tags.json()["tags"] == ["keep"]
    assert alice.get_manifest(repo, "keep").content == keep.manifest
    assert_error(alice.delete_manifest(repo, image.digest), 404, "MANIFEST_UNKNOWN")


def test_delete_by_tag_is_202_or_refused_with_400_or_405(alice: RegistryClient, repo: str) -> None:
    image = alice.push_image(repo, "v1")
    response = alice.delete_manifest(repo, "v1")
    assert response.status_code in (202, 400, 405), response.text
    if response.status_code == 202:
        assert alice.get_manifest(repo, "v1").status_code == 404
    else:
        assert alice.get_manifest(repo, "v1").content == image.manifest


@pytest.mark.requires("tag-delete")
def test_delete_by_tag(alice: RegistryClient, repo: str) -> None:
    image = alice.push_image(repo, "v1")
    alice.push_manifest(repo, "v2", image.manifest, image.media_type)
    assert alice.delete_manifest(repo, "v1").status_code == 202
    assert_error(alice.get_manifest(repo, "v1"), 404, "MANIFEST_UNKNOWN")
    # Only the tag went: the manifest and its other tags stay.
    assert alice.get_manifest(repo, image.digest).content == image.manifest
    assert alice.get_manifest(repo, "v2").content == image.manifest


MALFORMED_DIGESTS = ["sha256:abc", "sha256:" + "z" * 64, "md5:" + "0" * 32, "sha256:"]


@pytest.mark.parametrize("reference", MALFORMED_DIGESTS)
def test_delete_by_malformed_digest_is_400_or_404(
    alice: RegistryClient, repo: str, reference: str
) -> None:
    alice.push_image(repo, "v1")
    response = alice.delete_manifest(repo, reference)
    assert response.status_code in (400, 404), response.text


@pytest.mark.requires("strict-manifest-digest-path")
@pytest.mark.parametrize("reference", MALFORMED_DIGESTS)
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT"])
def test_malformed_digest_in_manifest_path_is_400_or_404(
    alice: RegistryClient, repo: str, reference: str, method: str
) -> None:
    image = alice.push_image(repo, "v1")
    content = image.manifest if method == "PUT" else None
    headers = {"Content-Type": image.media_type, "Accept": ", ".join(MANIFEST_MEDIA_TYPES)}
    response = alice.http.request(
        method, f"/v2/{repo}/manifests/{reference}", content=content, headers=headers
    )
    assert response.status_code in (400, 404), response.text


# What the OCI conformance suites (v1.1.1 and main) send: a reference that is
# neither a tag nor a digest, and a digest that is malformed.
NOT_A_REFERENCE = [".INVALID_MANIFEST_NAME", "-leading-dash", "t" * 129]
BAD_DIGEST = "sha256:baddigeststring"


@pytest.mark.parametrize("reference", NOT_A_REFERENCE)
def test_pulling_what_is_neither_tag_nor_digest_is_404(
    alice: RegistryClient, repo: str, reference: str
) -> None:
    alice.push_image(repo, "v1")
    assert alice.get_manifest(repo, reference).status_code == 404
    assert alice.head_manifest(repo, reference).status_code == 404


@pytest.mark.requires("strict-manifest-reference")
@pytest.mark.parametrize("reference", NOT_A_REFERENCE)
def test_pulling_what_is_neither_tag_nor_digest_is_manifest_unknown(
    alice: RegistryClient, repo: str, reference: str
) -> None:
    alice.push_image(repo, "v1")
    assert_error(alice.get_manifest(repo, reference), 404, "MANIFEST_UNKNOWN")
    head = alice.head_manifest(repo, reference)
    assert head.status_code == 404 and head.content == b""


@pytest.mark.requires("strict-manifest-digest-put")
def test_pushing_to_a_malformed_digest_is_digest_invalid(alice: RegistryClient, repo: str) -> None:
    body, media_type = _oci_manifest(alice, repo)
    assert_error(alice.put_manifest(repo, BAD_DIGEST, body, media_type), 400, "DIGEST_INVALID")
    assert alice.get_manifest(repo, BAD_DIGEST).status_code in (400, 404)
    # Nothing was stored under the body's real digest either.
    assert alice.get_manifest(repo, sha256_digest(body)).status_code == 404


# Names outside the OCI name grammar (SPEC E15).
MALFORMED_NAMES = [
    "alice/App",
    "alice/-app",
    "alice/app-",
    "alice/a..b",
    "alice/a%20b",
    "alice/%C3%A4",
]
# Also outside it, but the Go registry takes an upper-case first component for a
# host name, and checks no length: it challenges for these instead of refusing.
MALFORMED_NAMES_STRICT = ["Alice/app", "ALICE/APP", "a" * 256, "alice/" + "b" * 250]
NAME_PATHS = ["tags/list", "manifests/latest", "blobs/uploads/"]


def _get_with_valid_token(target: Target, name: str, path: str) -> httpx.Response:
    """The request with a valid token (for another repository: none can name this one)."""
    token = target.token("admin", "repository:admin/app:pull,push")
    method = "POST" if path.startswith("blobs/uploads") else "GET"
    return target.raw().request(
        method, f"/v2/{name}/{path}", headers={"Authorization": f"Bearer {token}"}
    )


def assert_name_refused(response: httpx.Response) -> None:
    assert response.status_code in (400, 404), response.text
    if response.headers.get("content-type", "").startswith("application/json"):
        assert set(error_codes(response)) <= {"NAME_INVALID", "NAME_UNKNOWN"}


@pytest.mark.parametrize("name", MALFORMED_NAMES)
@pytest.mark.parametrize("path", NAME_PATHS)
def test_malformed_name_is_400_or_404(target: Target, name: str, path: str) -> None:
    assert_name_refused(_get_with_valid_token(target, name, path))


@pytest.mark.requires("strict-name-invalid")
@pytest.mark.parametrize("name", MALFORMED_NAMES_STRICT)
@pytest.mark.parametrize("path", NAME_PATHS)
def test_malformed_name_is_refused_not_challenged(target: Target, name: str, path: str) -> None:
    response = _get_with_valid_token(target, name, path)
    assert_name_refused(response)
    assert "NAME_INVALID" in error_codes(response)


@pytest.mark.requires("strict-manifest-size")
def test_manifest_over_4_mib_is_413(alice: RegistryClient, repo: str) -> None:
    image = alice.push_image(repo)
    body = oci_manifest(
        descriptor(OCI_CONFIG, image.config),
        [descriptor(OCI_LAYER, layer) for layer in image.layers],
        annotations={"padding": "x" * (4 * 1024 * 1024)},
    )
    assert alice.put_manifest(repo, "big", body, OCI_MANIFEST).status_code == 413


def test_manifest_just_under_4_mib_is_accepted(alice: RegistryClient, repo: str) -> None:
    image = alice.push_image(repo)
    skeleton = oci_manifest(
        descriptor(OCI_CONFIG, image.config),
        [descriptor(OCI_LAYER, layer) for layer in image.layers],
        annotations={"padding": ""},
    )
    body = oci_manifest(
        descriptor(OCI_CONFIG, image.config),
        [descriptor(OCI_LAYER, layer) for layer in image.layers],
        annotations={"padding": "x" * (4 * 1024 * 1024 - len(skeleton) - 1)},
    )
    assert len(body) < 4 * 1024 * 1024
    response = alice.put_manifest(repo, "big", body, OCI_MANIFEST)
    assert response.status_code == 201, response.text[:300]
    assert alice.get_manifest(repo, "big").content == body


@pytest.mark.requires("manifest-tag-param")
def test_tag_parameters_tag_a_manifest_pushed_by_digest(alice: RegistryClient, repo: str) -> None:
    body, media_type = _oci_manifest(alice, repo)
    response = alice.http.put(
        f"/v2/{repo}/manifests/{sha256_digest(body)}",
        params=[("tag", "1.2.3"), ("tag", "1.2"), ("tag", "latest")],
        content=body,
        headers={"Content-Type": media_type},
    )
    assert_created(alice, response, body)
    tagged = {t.strip() for v in response.headers.get_list("oci-tag") for t in v.split(",")}
    assert tagged == {"1.2.3", "1.2", "latest"}
    for tag in tagged:
        assert alice.get_manifest(repo, tag).content == body


def test_manifest_with_json_config_and_empty_layers(alice: RegistryClient, repo: str) -> None:
    # An artifact: the empty descriptor as config, no layers at all.
    alice.push_blob(repo, EMPTY_JSON)
    body = json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.thing",
            "config": descriptor(OCI_EMPTY, EMPTY_JSON),
            "layers": [],
        }
    )
    response = alice.put_manifest(repo, "artifact", body, OCI_MANIFEST)
    assert_created(alice, response, body)
    assert_served(alice.get_manifest(repo, "artifact"), body, OCI_MANIFEST, head=False)

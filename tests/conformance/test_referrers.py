"""The referrers API (distribution-spec 1.1); only for targets with the "referrers" feature."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.support.registry_client import (
    EMPTY_JSON,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    RegistryClient,
    descriptor,
    oci_index,
    oci_manifest,
    parse_challenge,
    sha256_digest,
)

if TYPE_CHECKING:
    import httpx

    from tests.conformance.conftest import Target

pytestmark = [pytest.mark.e2e, pytest.mark.requires("referrers")]

SIGNATURE = "application/vnd.example.signature.v1"
SBOM_CONFIG = "application/vnd.example.sbom.config.v1+json"
BUNDLE = "application/vnd.example.bundle.v1"


def push_referrer(
    client: RegistryClient,
    repo: str,
    subject: dict[str, Any],
    *,
    artifact_type: str | None = None,
    config_type: str = OCI_EMPTY,
    annotations: dict[str, str] | None = None,
) -> bytes:
    config = EMPTY_JSON if config_type == OCI_EMPTY else b'{"format":"example"}'
    client.push_blob(repo, config)
    client.push_blob(repo, EMPTY_JSON)
    body = oci_manifest(
        descriptor(config_type, config),
        [descriptor(OCI_EMPTY, EMPTY_JSON)],
        subject=subject,
        artifact_type=artifact_type,
        annotations=annotations,
    )
    client.push_manifest(repo, sha256_digest(body), body, OCI_MANIFEST)
    return body


def expected(
    media_type: str, body: bytes, artifact_type: str | None, annotations: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "mediaType": media_type,
        "digest": sha256_digest(body),
        "size": len(body),
    }
    if artifact_type is not None:
        out["artifactType"] = artifact_type
    if annotations:
        out["annotations"] = annotations
    return out


def index_of(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0].strip() == OCI_INDEX
    body = response.json()
    assert body["schemaVersion"] == 2
    assert body["mediaType"] == OCI_INDEX
    assert isinstance(body["manifests"], list)
    return list(body["manifests"])


def by_digest(descriptors: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["digest"]: {k: d[k] for k in sorted(d) if k != "platform"} for d in descriptors}


def test_no_referrers_is_an_empty_index(alice: RegistryClient, repo: str) -> None:
    image = alice.push_image(repo, "v1")
    assert index_of(alice.referrers(repo, image.digest)) == []


def test_referrers_of_a_manifest_never_pushed_is_an_empty_index(
    alice: RegistryClient, repo: str
) -> None:
    alice.push_image(repo, "v1")
    assert index_of(alice.referrers(repo, sha256_digest(b"no such manifest"))) == []


def test_referrers_list_descriptors(alice: RegistryClient, repo: str) -> None:
    subject_image = alice.push_image(repo, "v1")
    subject = subject_image.descriptor
    other = alice.push_image(repo, "v2")

    signature = push_referrer(
        alice, repo, subject, artifact_type=SIGNATURE, annotations={"org.example.kind": "sig"}
    )
    sbom = push_referrer(
        alice, repo, subject, config_type=SBOM_CONFIG, annotations={"org.example.kind": "sbom"}
    )
    bundle = oci_index(
        [other.descriptor], subject=subject, artifact_type=BUNDLE, annotations={"a": "b"}
    )
    alice.push_manifest(repo, sha256_digest(bundle), bundle, OCI_INDEX)
    plain_index = oci_index([other.descriptor], subject=subject)
    alice.push_manifest(repo, sha256_digest(plain_index), plain_index, OCI_INDEX)
    # Referrers of another manifest, and of this one in another repository, are not listed.
    push_referrer(alice, repo, other.descriptor, artifact_type=SIGNATURE)
    push_referrer(alice, repo + "-elsewhere", subject, artifact_type=SIGNATURE)

    listed = by_digest(index_of(alice.referrers(repo, subject_image.digest)))
    assert listed == by_digest(
        [
            expected(OCI_MANIFEST, signature, SIGNATURE, {"org.example.kind": "sig"}),
            # No artifactType in the manifest: the config's media type stands in.
            expected(OCI_MANIFEST, sbom, SBOM_CONFIG, {"org.example.kind": "sbom"}),
            expected(OCI_INDEX, bundle, BUNDLE, {"a": "b"}),
            # An index without artifactType has none in its descriptor.
            expected(OCI_INDEX, plain_index, None, None),
        ]
    )


def test_artifact_type_filter(alice: RegistryClient, repo: str) -> None:
    image = alice.push_image(repo, "v1")
    signature = push_referrer(alice, repo, image.descriptor, artifact_type=SIGNATURE)
    push_referrer(alice, repo, image.descriptor, config_type=SBOM_CONFIG)

    response = alice.referrers(repo, image.digest, artifactType=SIGNATURE)
    assert [d["digest"] for d in index_of(response)] == [sha256_digest(signature)]
    assert response.headers["oci-filters-applied"] == "artifactType"

    response = alice.referrers(repo, image.digest, artifactType="application/vnd.example.none")
    assert index_of(response) == []
    assert response.headers["oci-filters-applied"] == "artifactType"

    unfiltered = alice.referrers(repo, image.digest)
    assert len(index_of(unfiltered)) == 2
    assert "oci-filters-applied" not in unfiltered.headers


def test_deleted_referrer_is_no_longer_listed(alice: RegistryClient, repo: str) -> None:
    image = alice.push_image(repo, "v1")
    keep = push_referrer(alice, repo, image.descriptor, artifact_type=SIGNATURE)
    gone = push_referrer(alice, repo, image.descriptor, artifact_type=BUNDLE)
    assert alice.delete_manifest(repo, sha256_digest(gone)).status_code == 202
    listed = index_of(alice.referrers(repo, image.digest))
    assert [d["digest"] for d in listed] == [sha256_digest(keep)]


def test_referrer_pushed_before_its_subject(alice: RegistryClient, repo: str) -> None:
    image_manifest_later = alice.push_image(repo + "-staging")
    subject = image_manifest_later.descriptor
    signature = push_referrer(alice, repo, subject, artifact_type=SIGNATURE)
    assert [d["digest"] for d in index_of(alice.referrers(repo, subject["digest"]))] == [
        sha256_digest(signature)
    ]


@pytest.mark.parametrize("digest", ["sha256:abc", "sha256:" + "z" * 64, "md5:" + "0" * 32])
def test_malformed_digest_is_400(alice: RegistryClient, repo: str, digest: str) -> None:
    alice.push_image(repo, "v1")
    assert alice.referrers(repo, digest).status_code == 400


def test_referrers_need_pull(target: Target) -> None:
    response = target.client("alice").get(f"/v2/bob/app/referrers/{sha256_digest(b'x')}")
    assert response.status_code == 401
    _, params = parse_challenge(response.headers["www-authenticate"])
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == "repository:bob/app:pull"


@pytest.mark.requires("oci-subject-header")
def test_put_with_subject_answers_oci_subject(alice: RegistryClient, repo: str) -> None:
    image = alice.push_image(repo, "v1")
    alice.push_blob(repo, EMPTY_JSON)
    body = oci_manifest(
        descriptor(OCI_EMPTY, EMPTY_JSON),
        [descriptor(OCI_EMPTY, EMPTY_JSON)],
        subject=image.descriptor,
        artifact_type=SIGNATURE,
    )
    response = alice.put_manifest(repo, sha256_digest(body), body, OCI_MANIFEST)
    assert response.status_code == 201
    assert response.headers["oci-subject"] == image.digest

    plain = alice.put_manifest(repo, "v2", image.manifest, image.media_type)
    assert plain.status_code == 201
    assert "oci-subject" not in plain.headers

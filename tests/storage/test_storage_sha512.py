"""Manifests addressed by sha512: stored, tagged, listed, referred to, deleted and kept by gc
under that digest, on every driver."""

from __future__ import annotations

import hashlib
import json

import pytest

from registry_proxy.reference import Digest
from registry_proxy.storage import Storage, paths
from registry_proxy.storage.errors import DigestInvalid, ManifestUnknown
from registry_proxy.storage.gc import collect
from tests.storage.helpers import OCI_MANIFEST, descriptor, image_manifest, push_blob

pytestmark = pytest.mark.anyio

REPO = "team/app"
CONFIG = b'{"architecture":"amd64","sha":512}'
LAYER = b"a layer under a sha512 manifest"


def sha512(data: bytes) -> Digest:
    return Digest("sha512", hashlib.sha512(data).hexdigest())


@pytest.fixture
async def pushed(storage: Storage) -> tuple[bytes, Digest]:
    for data in (CONFIG, LAYER):
        await push_blob(storage, REPO, data)
    body = image_manifest(CONFIG, [LAYER])
    digest = sha512(body)
    result = await storage.manifests.put(REPO, str(digest), body, OCI_MANIFEST, ["a", "b"])
    assert result.digest == digest
    return body, digest


async def test_tags_point_at_the_sha512_digest(
    storage: Storage, pushed: tuple[bytes, Digest]
) -> None:
    body, digest = pushed
    assert await storage.tags.list(REPO) == ["a", "b"]
    for reference in ("a", "b", str(digest)):
        stored = await storage.manifests.get(REPO, reference)
        assert (stored.body, stored.digest) == (body, digest)
    assert await storage.tags.resolve(REPO, "a") == digest
    # Stored where the Go layout puts a sha512 blob and revision.
    assert await storage.driver.get_content(paths.blob_data(digest)) == body
    link = await storage.driver.get_content(paths.REVISIONS.link(REPO, digest))
    assert link.decode() == str(digest)


async def test_the_same_bytes_by_sha256_are_a_second_revision(
    storage: Storage, pushed: tuple[bytes, Digest]
) -> None:
    body, digest = pushed
    by_sha256 = Digest.of(body)
    result = await storage.manifests.put(REPO, "c", body, OCI_MANIFEST)
    assert result.digest == by_sha256
    assert (await storage.manifests.get(REPO, "c")).digest == by_sha256
    assert (await storage.manifests.get(REPO, "a")).digest == digest
    # Deleting one revision leaves the other and its tags.
    await storage.manifests.delete(REPO, digest)
    assert await storage.tags.list(REPO) == ["c"]
    with pytest.raises(ManifestUnknown):
        await storage.manifests.get(REPO, str(digest))
    assert (await storage.manifests.get(REPO, str(by_sha256))).body == body


async def test_a_body_that_does_not_match_its_sha512_is_refused(storage: Storage) -> None:
    for data in (CONFIG, LAYER):
        await push_blob(storage, REPO, data)
    body = image_manifest(CONFIG, [LAYER])
    wrong = sha512(body + b" ")
    with pytest.raises(DigestInvalid):
        await storage.manifests.put(REPO, str(wrong), body, OCI_MANIFEST, ["a"])
    with pytest.raises(ManifestUnknown):
        await storage.tags.resolve(REPO, "a")


async def test_referrers_of_and_by_a_sha512_manifest(
    storage: Storage, pushed: tuple[bytes, Digest]
) -> None:
    _, subject = pushed
    empty = await push_blob(storage, REPO, b"{}")
    referrer = image_manifest(
        b"{}",
        [],
        config_type="application/vnd.oci.empty.v1+json",
        artifactType="application/vnd.example.sbom",
        subject={"mediaType": OCI_MANIFEST, "digest": str(subject), "size": 1},
    )
    referrer_digest = sha512(referrer)
    result = await storage.manifests.put(REPO, str(referrer_digest), referrer, OCI_MANIFEST)
    assert result.subject == subject
    listed = await storage.referrers.list(REPO, subject)
    assert [d["digest"] for d in listed] == [str(referrer_digest)]
    assert listed[0]["artifactType"] == "application/vnd.example.sbom"
    assert empty == Digest.of(b"{}")
    await storage.manifests.delete(REPO, referrer_digest)
    assert await storage.referrers.list(REPO, subject) == []


async def test_gc_keeps_what_a_sha512_manifest_references(
    storage: Storage, pushed: tuple[bytes, Digest]
) -> None:
    _, digest = pushed
    orphan = await push_blob(storage, REPO, b"nobody needs me")
    kept = {Digest.of(CONFIG), Digest.of(LAYER), digest}

    report = await collect(storage, delete_untagged=True)
    assert (report.swept, report.manifests_deleted) == (1, 0)
    for blob in kept:
        assert await storage.blobs.stat(blob) is not None, blob
    assert await storage.blobs.stat(orphan) is None

    # Untagged, then collected: the manifest and its blobs go.
    await storage.manifests.delete_tag(REPO, "a")
    await storage.manifests.delete_tag(REPO, "b")
    report = await collect(storage, delete_untagged=True)
    assert report.manifests_deleted == 1
    for blob in kept:
        assert await storage.blobs.stat(blob) is None, blob


async def test_an_index_may_name_a_sha512_child(
    storage: Storage, pushed: tuple[bytes, Digest]
) -> None:
    body, digest = pushed
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [descriptor(body, OCI_MANIFEST) | {"digest": str(digest)}],
        }
    ).encode()
    await storage.manifests.put(REPO, "multi", index, None)
    await storage.manifests.delete_tag(REPO, "a")
    await storage.manifests.delete_tag(REPO, "b")
    # The child is untagged but an index names it: gc keeps it.
    await collect(storage, delete_untagged=True)
    assert (await storage.manifests.get(REPO, str(digest))).body == body

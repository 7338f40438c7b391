"""Manifests, tags and referrers, on both drivers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from registry_proxy.reference import Digest
from registry_proxy.storage import ManifestRules, Storage
from registry_proxy.storage.driver import StorageDriver
from registry_proxy.storage.errors import (
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestTooLarge,
    ManifestUnknown,
    NameUnknown,
)
from registry_proxy.storage.manifests import MAX_MANIFEST_SIZE
from tests.storage.helpers import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    descriptor,
    image_manifest,
    index_manifest,
    push_blob,
    push_image,
)

pytestmark = pytest.mark.anyio

REPO = "team/app"
CONFIG = b'{"architecture":"arm64"}'
LAYER = b"a layer"
EMPTY_CONFIG = b"{}"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"


@pytest.fixture
async def blobs(storage: Storage) -> list[Digest]:
    return [await push_blob(storage, REPO, data) for data in (CONFIG, LAYER, EMPTY_CONFIG)]


def manifest_doc(**extra: Any) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "config": descriptor(CONFIG, "application/vnd.oci.image.config.v1+json"),
        "layers": [descriptor(LAYER, "application/vnd.oci.image.layer.v1.tar")],
        **extra,
    }


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
async def test_image_manifest_types(storage: Storage, blobs: list[Digest], media_type: str) -> None:
    body = image_manifest(CONFIG, [LAYER], media_type=media_type)
    result = await storage.manifests.put(REPO, "v1", body, media_type)
    assert result.digest == Digest.of(body)
    assert result.subject is None
    for reference in ("v1", str(result.digest)):
        stored = await storage.manifests.get(REPO, reference)
        assert (stored.body, stored.media_type, stored.digest) == (body, media_type, result.digest)


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
async def test_index_types(storage: Storage, blobs: list[Digest], media_type: str) -> None:
    child_type = DOCKER_MANIFEST if media_type == DOCKER_LIST else OCI_MANIFEST
    child = image_manifest(CONFIG, [LAYER], media_type=child_type)
    await storage.manifests.put(REPO, str(Digest.of(child)), child, child_type)
    body = index_manifest([child], media_type=media_type)
    result = await storage.manifests.put(REPO, "multi", body, media_type)
    stored = await storage.manifests.get(REPO, "multi")
    assert (stored.body, stored.media_type, stored.digest) == (body, media_type, result.digest)


async def test_body_is_stored_byte_exact(storage: Storage, blobs: list[Digest]) -> None:
    body = b'  {\n\t"schemaVersion" : 2,  "mediaType":"%s",\r\n' % OCI_MANIFEST.encode()
    body += b'"config": %s, "layers": [ ] ,"annotations":{"\\u00e9":"\xc3\xa9"}}  \n' % (
        encode(descriptor(CONFIG, "application/vnd.oci.image.config.v1+json"))
    )
    result = await storage.manifests.put(REPO, "exact", body, OCI_MANIFEST)
    assert result.digest == Digest.of(body)
    assert (await storage.manifests.get(REPO, "exact")).body == body


async def test_media_type_without_field(storage: Storage, blobs: list[Digest]) -> None:
    body = encode(manifest_doc())
    await storage.manifests.put(REPO, "plain", body, None)
    assert (await storage.manifests.get(REPO, "plain")).media_type == OCI_MANIFEST
    await storage.manifests.put(REPO, "typed", body, OCI_MANIFEST + "; charset=utf-8")
    await storage.manifests.put(REPO, "generic", body, "application/json")

    index = encode({"schemaVersion": 2, "manifests": [descriptor(body, OCI_MANIFEST)]})
    await storage.manifests.put(REPO, "index", index, None)
    assert (await storage.manifests.get(REPO, "index")).media_type == OCI_INDEX


@pytest.mark.parametrize(
    ("doc", "content_type"),
    [
        (manifest_doc(mediaType=OCI_MANIFEST), DOCKER_MANIFEST),  # field and header disagree
        (manifest_doc(), DOCKER_MANIFEST),  # Docker types carry their mediaType field
        (manifest_doc(), OCI_INDEX),  # header disagrees with the shape
        (manifest_doc(mediaType="application/vnd.example+json"), None),
        (manifest_doc(), "application/vnd.docker.distribution.manifest.v1+prettyjws"),
        (manifest_doc(mediaType=7), None),
        ({"schemaVersion": 2}, None),  # neither a manifest nor an index
        (manifest_doc(schemaVersion=1), None),
        ({k: v for k, v in manifest_doc().items() if k != "schemaVersion"}, None),
        (manifest_doc(layers=[{"mediaType": "x", "size": 1}]), None),  # no digest
        (manifest_doc(layers=[{"digest": "sha256:nothex", "size": 1}]), None),
        (manifest_doc(layers="nope"), None),
        ({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}, None),  # no config
        ({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": {}}, None),
        (manifest_doc(subject="sha256:abc"), None),
    ],
)
async def test_invalid_manifests(
    storage: Storage, blobs: list[Digest], doc: dict[str, Any], content_type: str | None
) -> None:
    with pytest.raises(ManifestInvalid):
        await storage.manifests.put(REPO, "bad", encode(doc), content_type)
    with pytest.raises(ManifestUnknown):
        await storage.manifests.get(REPO, "bad")


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe{}", b"null"])
async def test_not_a_json_object(storage: Storage, body: bytes) -> None:
    with pytest.raises(ManifestInvalid):
        await storage.manifests.put(REPO, "bad", body, OCI_MANIFEST)


async def test_digest_references(storage: Storage, blobs: list[Digest]) -> None:
    body = image_manifest(CONFIG, [LAYER])
    digest = Digest.of(body)
    assert (await storage.manifests.put(REPO, str(digest), body, OCI_MANIFEST)).digest == digest
    assert await storage.tags.list(REPO) == []
    assert await storage.manifests.exists(REPO, digest)
    with pytest.raises(DigestInvalid):
        await storage.manifests.put(REPO, str(Digest.of(b"other")), body, OCI_MANIFEST)
    with pytest.raises(DigestInvalid):
        await storage.manifests.put(REPO, "sha256:abc", body, OCI_MANIFEST)
    with pytest.raises(DigestInvalid):
        await storage.manifests.put(REPO, "md5:" + "0" * 32, body, OCI_MANIFEST)
    sha512 = Digest.of(body, "sha512")
    assert (await storage.manifests.put(REPO, str(sha512), body, OCI_MANIFEST)).digest == sha512
    assert (await storage.manifests.get(REPO, str(sha512))).body == body


async def test_unknown_references(storage: Storage, blobs: list[Digest]) -> None:
    await storage.manifests.put(REPO, "v1", image_manifest(CONFIG, [LAYER]), OCI_MANIFEST)
    for reference in ("v2", str(Digest.of(b"nope")), "sha256:short", "md5:00"):
        with pytest.raises(ManifestUnknown):
            await storage.manifests.get(REPO, reference)
    with pytest.raises(ManifestUnknown):
        await storage.manifests.get("other/repo", "v1")
    assert not await storage.manifests.exists(REPO, Digest.of(b"nope"))


async def test_missing_blobs(storage: Storage, blobs: list[Digest]) -> None:
    missing_layer = b"never pushed"
    body = image_manifest(CONFIG, [LAYER, missing_layer, b"also missing"])
    with pytest.raises(ManifestBlobUnknown) as caught:
        await storage.manifests.put(REPO, "v1", body, OCI_MANIFEST)
    assert caught.value.digest == str(Digest.of(missing_layer))

    body = image_manifest(b"missing config", [LAYER])
    with pytest.raises(ManifestBlobUnknown) as caught:
        await storage.manifests.put(REPO, "v1", body, OCI_MANIFEST)
    assert caught.value.digest == str(Digest.of(b"missing config"))

    # Stored, but linked only into another repository.
    with pytest.raises(ManifestBlobUnknown):
        await storage.manifests.put("other/repo", "v1", image_manifest(CONFIG, [LAYER]), None)
    with pytest.raises(ManifestUnknown):
        await storage.manifests.get(REPO, "v1")


async def test_foreign_layers_are_exempt_where_their_urls_are_allowed(
    driver: StorageDriver, storage: Storage, blobs: list[Digest]
) -> None:
    foreign = descriptor(
        b"windows base layer",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        urls=["https://example.invalid/layer"],
    )
    doc = manifest_doc(mediaType=DOCKER_MANIFEST)
    doc["layers"].insert(0, foreign)
    # By default no URL is allowed, as in the Go registry.
    with pytest.raises(ManifestInvalid, match="URL not allowed"):
        await storage.manifests.put(REPO, "win", encode(doc), DOCKER_MANIFEST)
    allowing = Storage(driver, ManifestRules(allow=lambda url: url.startswith("https://")))
    result = await allowing.manifests.put(REPO, "win", encode(doc), DOCKER_MANIFEST)
    assert result.digest == Digest.of(encode(doc))


async def test_index_children_must_exist(storage: Storage, blobs: list[Digest]) -> None:
    present = image_manifest(CONFIG, [LAYER])
    await storage.manifests.put(REPO, str(Digest.of(present)), present, OCI_MANIFEST)
    absent = image_manifest(CONFIG, [])
    with pytest.raises(ManifestBlobUnknown) as caught:
        await storage.manifests.put(REPO, "idx", index_manifest([present, absent]), OCI_INDEX)
    assert caught.value.digest == str(Digest.of(absent))
    # A blob is not a manifest.
    with pytest.raises(ManifestBlobUnknown):
        await storage.manifests.put(REPO, "idx", index_manifest([LAYER]), OCI_INDEX)
    empty = index_manifest([])
    await storage.manifests.put(REPO, "empty", empty, OCI_INDEX)


async def test_size_limit(storage: Storage, blobs: list[Digest]) -> None:
    doc = manifest_doc(mediaType=OCI_MANIFEST, annotations={"pad": ""})
    pad = MAX_MANIFEST_SIZE - len(encode(doc))
    doc["annotations"]["pad"] = "x" * pad
    body = encode(doc)
    assert len(body) == MAX_MANIFEST_SIZE
    await storage.manifests.put(REPO, "big", body, OCI_MANIFEST)
    assert (await storage.manifests.get(REPO, "big")).body == body
    doc["annotations"]["pad"] += "x"
    with pytest.raises(ManifestTooLarge) as caught:
        await storage.manifests.put(REPO, "bigger", encode(doc), OCI_MANIFEST)
    assert caught.value.limit == MAX_MANIFEST_SIZE


async def test_tags(storage: Storage, blobs: list[Digest]) -> None:
    with pytest.raises(NameUnknown):
        await storage.tags.list(REPO + "x")
    first = image_manifest(CONFIG, [LAYER])
    second = image_manifest(CONFIG, [])
    for tag in ("latest", "1.0", "Zeta", "_under", "1.0-rc"):
        await storage.manifests.put(REPO, tag, first, OCI_MANIFEST)
    assert await storage.tags.list(REPO) == ["1.0", "1.0-rc", "Zeta", "_under", "latest"]
    assert await storage.tags.resolve(REPO, "latest") == Digest.of(first)
    await storage.manifests.put(REPO, "latest", second, OCI_MANIFEST)
    assert await storage.tags.resolve(REPO, "latest") == Digest.of(second)
    assert (await storage.manifests.get(REPO, "latest")).body == second
    with pytest.raises(ManifestUnknown):
        await storage.tags.resolve(REPO, "missing")


async def test_repository_without_tags(storage: Storage, blobs: list[Digest]) -> None:
    assert await storage.tags.list(REPO) == []


async def test_delete_removes_tags_pointing_at_it(storage: Storage, blobs: list[Digest]) -> None:
    doomed = image_manifest(CONFIG, [LAYER])
    kept = image_manifest(CONFIG, [])
    for tag in ("a", "b"):
        await storage.manifests.put(REPO, tag, doomed, OCI_MANIFEST)
    await storage.manifests.put(REPO, "c", kept, OCI_MANIFEST)
    await storage.manifests.delete(REPO, Digest.of(doomed))
    assert await storage.tags.list(REPO) == ["c"]
    for reference in ("a", str(Digest.of(doomed))):
        with pytest.raises(ManifestUnknown):
            await storage.manifests.get(REPO, reference)
    assert not await storage.manifests.exists(REPO, Digest.of(doomed))
    with pytest.raises(ManifestUnknown):
        await storage.manifests.delete(REPO, Digest.of(doomed))
    assert (await storage.manifests.get(REPO, "c")).body == kept
    # The blobs stay until garbage collection.
    assert await storage.blobs.stat(Digest.of(doomed)) == len(doomed)


async def test_delete_tag(storage: Storage, blobs: list[Digest]) -> None:
    body = image_manifest(CONFIG, [LAYER])
    await storage.manifests.put(REPO, "v1", body, OCI_MANIFEST)
    await storage.manifests.put(REPO, "v2", body, OCI_MANIFEST)
    await storage.manifests.delete_tag(REPO, "v1")
    assert await storage.tags.list(REPO) == ["v2"]
    assert (await storage.manifests.get(REPO, str(Digest.of(body)))).body == body
    with pytest.raises(ManifestUnknown):
        await storage.manifests.delete_tag(REPO, "v1")


async def test_referrers(storage: Storage, blobs: list[Digest]) -> None:
    _, subject, _ = await push_image(storage, REPO, "v1")
    subject_desc = {"mediaType": OCI_MANIFEST, "digest": str(subject), "size": 1}
    signature = manifest_doc(
        mediaType=OCI_MANIFEST,
        artifactType="application/vnd.example.signature",
        config=descriptor(EMPTY_CONFIG, EMPTY_TYPE),
        subject=subject_desc,
        annotations={"org.example.signed-by": "ci"},
    )
    sbom = manifest_doc(
        mediaType=OCI_MANIFEST,
        config=descriptor(CONFIG, "application/vnd.example.sbom.config"),
        subject=subject_desc,
    )
    attestations = index_manifest([], artifactType="application/vnd.example.bundle")
    attestations = encode({**json.loads(attestations), "subject": subject_desc})
    results = {}
    for name, body, media_type in (
        ("signature", encode(signature), OCI_MANIFEST),
        ("sbom", encode(sbom), OCI_MANIFEST),
        ("bundle", attestations, OCI_INDEX),
    ):
        result = await storage.manifests.put(REPO, str(Digest.of(body)), body, media_type)
        assert result.subject == subject
        results[name] = (result.digest, len(body))

    found = await storage.referrers.list(REPO, subject)
    assert found == sorted(
        [
            {
                "mediaType": OCI_MANIFEST,
                "digest": str(results["signature"][0]),
                "size": results["signature"][1],
                "artifactType": "application/vnd.example.signature",
                "annotations": {"org.example.signed-by": "ci"},
            },
            {
                "mediaType": OCI_MANIFEST,
                "digest": str(results["sbom"][0]),
                "size": results["sbom"][1],
                "artifactType": "application/vnd.example.sbom.config",
            },
            {
                "mediaType": OCI_INDEX,
                "digest": str(results["bundle"][0]),
                "size": results["bundle"][1],
                "artifactType": "application/vnd.example.bundle",
            },
        ],
        key=lambda d: str(d["digest"]),
    )
    only = await storage.referrers.list(REPO, subject, "application/vnd.example.sbom.config")
    assert [d["digest"] for d in only] == [str(results["sbom"][0])]
    assert await storage.referrers.list(REPO, subject, "application/none") == []
    assert await storage.referrers.list(REPO, Digest.of(b"no referrers")) == []
    assert await storage.referrers.list("unknown/repo", subject) == []

    await storage.manifests.delete(REPO, results["sbom"][0])
    remaining = await storage.referrers.list(REPO, subject)
    assert str(results["sbom"][0]) not in [d["digest"] for d in remaining]
    assert len(remaining) == 2


async def test_subject_may_be_missing(storage: Storage, blobs: list[Digest]) -> None:
    absent = Digest.of(b"not pushed yet")
    doc = manifest_doc(
        mediaType=OCI_MANIFEST,
        subject={"mediaType": OCI_MANIFEST, "digest": str(absent), "size": 10},
    )
    result = await storage.manifests.put(REPO, str(Digest.of(encode(doc))), encode(doc), None)
    assert result.subject == absent
    [found] = await storage.referrers.list(REPO, absent)
    assert found["digest"] == str(result.digest)
    assert found["artifactType"] == "application/vnd.oci.image.config.v1+json"

"""PUT /v2/<name>/manifests/sha512:<hex>?tag=a&tag=b, and what GET, HEAD, DELETE make of it."""

from __future__ import annotations

import hashlib
import json

from starlette.testclient import TestClient

from tests.registry.conftest import Mint
from tests.registry.test_api_bad_input import ALL, push_blob, snapshot

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def manifest(registry: TestClient, mint: Mint) -> bytes:
    config, layer = b'{"architecture":"amd64"}', b"layer bytes of a sha512 image"
    descriptors = [
        {
            "mediaType": media_type,
            "digest": push_blob(registry, mint, data),
            "size": len(data),
        }
        for media_type, data in (
            ("application/vnd.oci.image.config.v1+json", config),
            ("application/vnd.oci.image.layer.v1.tar", layer),
        )
    ]
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptors[0],
        "layers": descriptors[1:],
    }
    return json.dumps(doc).encode()


def test_push_by_sha512_with_two_tags(registry: TestClient, mint: Mint) -> None:
    auth = mint(ALL)
    body = manifest(registry, mint)
    digest = "sha512:" + hashlib.sha512(body).hexdigest()
    put = registry.put(
        f"/v2/team/app/manifests/{digest}?tag=a&tag=b",
        content=body,
        headers={**auth, "Content-Type": OCI_MANIFEST},
    )
    assert put.status_code == 201, put.text
    assert put.headers["Docker-Content-Digest"] == digest
    assert put.headers["Location"] == f"/v2/team/app/manifests/{digest}"
    assert put.headers["OCI-Tag"] == "a, b"

    for reference in ("a", "b", digest):
        for method in ("GET", "HEAD"):
            got = registry.request(method, f"/v2/team/app/manifests/{reference}", headers=auth)
            assert got.status_code == 200, (method, reference, got.text)
            assert got.headers["Docker-Content-Digest"] == digest
            assert got.headers["Content-Length"] == str(len(body))
            assert got.content == (body if method == "GET" else b"")

    tags = registry.get("/v2/team/app/tags/list", headers=auth)
    assert tags.json()["tags"] == ["a", "b"]

    # The same bytes by their sha256: a second revision, the tags stay with sha512.
    sha256 = "sha256:" + hashlib.sha256(body).hexdigest()
    again = registry.put(
        f"/v2/team/app/manifests/{sha256}",
        content=body,
        headers={**auth, "Content-Type": OCI_MANIFEST},
    )
    assert again.status_code == 201 and again.headers["Docker-Content-Digest"] == sha256
    assert "OCI-Tag" not in again.headers
    assert (
        registry.head("/v2/team/app/manifests/a", headers=auth).headers["Docker-Content-Digest"]
        == digest
    )

    deleted = registry.delete(f"/v2/team/app/manifests/{digest}", headers=auth)
    assert deleted.status_code == 202
    for reference in ("a", "b", digest):
        gone = registry.get(f"/v2/team/app/manifests/{reference}", headers=auth)
        assert gone.status_code == 404
    assert registry.get(f"/v2/team/app/manifests/{sha256}", headers=auth).status_code == 200
    assert registry.get("/v2/team/app/tags/list", headers=auth).json()["tags"] == []


def test_a_sha512_that_does_not_match_stores_nothing(
    registry: TestClient, mint: Mint, storage_root: object
) -> None:
    auth = mint(ALL)
    body = manifest(registry, mint)
    before = snapshot(storage_root)  # type: ignore[arg-type]
    wrong = "sha512:" + hashlib.sha512(body + b"\n").hexdigest()
    put = registry.put(
        f"/v2/team/app/manifests/{wrong}?tag=a",
        content=body,
        headers={**auth, "Content-Type": OCI_MANIFEST},
    )
    assert put.status_code == 400
    assert put.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert snapshot(storage_root) == before  # type: ignore[arg-type]


def test_tag_parameters_are_bounded_and_checked(
    registry: TestClient, mint: Mint, storage_root: object
) -> None:
    auth = mint(ALL)
    body = manifest(registry, mint)
    before = snapshot(storage_root)  # type: ignore[arg-type]
    many = "&".join(f"tag=t{i}" for i in range(101))
    for query in (many, "tag=ok&tag=-bad", "tag=" + "x" * 129, "tag=%C3%A9t%C3%A9"):
        put = registry.put(
            f"/v2/team/app/manifests/v1?{query}",
            content=body,
            headers={**auth, "Content-Type": OCI_MANIFEST},
        )
        assert put.status_code == 400, query
        assert put.json()["errors"][0]["code"] == "TAG_INVALID"
    assert snapshot(storage_root) == before  # type: ignore[arg-type]
    # A repeated tag is applied (and reported) once.
    put = registry.put(
        "/v2/team/app/manifests/v1?tag=v1&tag=x&tag=x",
        content=body,
        headers={**auth, "Content-Type": OCI_MANIFEST},
    )
    assert put.status_code == 201 and put.headers["OCI-Tag"] == "v1, x"

"""Hostile and malformed requests get the spec's error, never a 500, and touch nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.registry.conftest import Mint, raw_request

ALL = "repository:team/app:pull,push,delete"


def snapshot(root: Path) -> dict[str, bytes]:
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def push_blob(registry: TestClient, mint: Mint, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = registry.post(
        f"/v2/team/app/blobs/uploads/?digest={digest}", content=data, headers=mint(ALL)
    )
    assert r.status_code == 201, r.text
    return digest


@pytest.mark.parametrize(
    "path",
    [
        "/v2/../../etc/passwd/blobs/uploads/",
        "/v2/team/%2e%2e/%2e%2e/x/blobs/uploads/",
        "/v2/team/..%2f..%2fx/blobs/uploads/",
        "/v2//absolute/blobs/uploads/",
        "/v2/Team/App/blobs/uploads/",
        "/v2/team/app%00/blobs/uploads/",
        "/v2/team/a%5cb/blobs/uploads/",
    ],
)
def test_traversal_and_bad_names_refused(
    registry: TestClient, mint: Mint, storage_root: Path, path: str
) -> None:
    before = snapshot(storage_root.parent)
    r = registry.post(path, headers=mint(ALL))
    assert r.status_code in (400, 404), r.text
    if r.status_code == 400:
        assert r.json()["errors"][0]["code"] == "NAME_INVALID"
    after = snapshot(storage_root.parent)
    assert set(after) - set(before) <= {k for k in after if k.startswith("storage/")}
    assert not any(".." in k for k in after)
    assert not (storage_root.parent.parent / "x").exists()


@pytest.mark.parametrize(
    ("digest", "status"),
    [
        ("sha256:zz", 400),
        ("md5:d41d8cd98f00b204e9800998ecf8427e", 400),
        ("sha256:" + "A" * 64, 400),
        ("sha256:" + "a" * 63, 400),
        ("nonsense", 400),
        # The client itself resolves the dots: whatever is left must not be found.
        ("sha256:../../../etc", 404),
    ],
)
def test_malformed_digests_in_paths(
    registry: TestClient, mint: Mint, digest: str, status: int
) -> None:
    for method, path in (
        ("GET", f"/v2/team/app/blobs/{digest}"),
        ("DELETE", f"/v2/team/app/blobs/{digest}"),
        ("GET", f"/v2/team/app/referrers/{digest}"),
    ):
        r = registry.request(method, path, headers=mint(ALL))
        assert r.status_code == status, (method, path, r.text)
        assert r.json()["errors"][0]["code"] in ("DIGEST_INVALID", "UNSUPPORTED")
    r = registry.get(f"/v2/team/app/manifests/{digest}", headers=mint(ALL))
    assert r.status_code in (400, 404)
    assert r.status_code != 500


def test_unsupported_algorithm_on_upload(registry: TestClient, mint: Mint) -> None:
    r = registry.post(
        "/v2/team/app/blobs/uploads/?digest=sha1:" + "a" * 40, content=b"x", headers=mint(ALL)
    )
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert "unsupported" in r.json()["errors"][0]["message"]


@pytest.mark.parametrize("upload_id", ["not-a-uuid", "..", "%2e%2e", "0" * 300])
def test_unknown_or_malformed_upload_ids(registry: TestClient, mint: Mint, upload_id: str) -> None:
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        r = registry.request(
            method,
            f"/v2/team/app/blobs/uploads/{upload_id}?digest=sha256:{'a' * 64}",
            headers=mint(ALL),
        )
        assert r.status_code == 404, (method, r.text)
        # "." segments are resolved by the client, leaving a path we do not serve.
        expected = {"BLOB_UPLOAD_UNKNOWN"} if upload_id != ".." else {"UNSUPPORTED"}
        assert r.json()["errors"][0]["code"] in expected


@pytest.mark.parametrize(
    "header",
    [
        "bytes=abc",
        "bytes=5-2",
        "bytes=100-200",
        "bytes=-0",
        "bytes=",
        "bytes=" + "9" * 5000,
        "bytes=" + "9" * 5000 + "-",
        "bytes=5-" + "4" * 5000 + ",x",
        "bytes=\u00b2-3".encode(),
        "bytes=100-200,300-400",
    ],
)
def test_bad_ranges(registry: TestClient, mint: Mint, header: str | bytes) -> None:
    digest = push_blob(registry, mint, b"0123456789")
    r = registry.get(f"/v2/team/app/blobs/{digest}", headers=mint(ALL) | {"Range": header})
    assert r.status_code == 416
    assert r.headers["content-range"] == "bytes */10"


def test_good_ranges(registry: TestClient, mint: Mint) -> None:
    digest = push_blob(registry, mint, b"0123456789")
    for header, body, content_range in (
        ("bytes=2-4", b"234", "bytes 2-4/10"),
        ("bytes=7-", b"789", "bytes 7-9/10"),
        ("bytes=-3", b"789", "bytes 7-9/10"),
        ("bytes=8-100", b"89", "bytes 8-9/10"),
        ("bytes=0-" + "9" * 5000, b"0123456789", "bytes 0-9/10"),
        ("bytes=-" + "9" * 5000, b"0123456789", "bytes 0-9/10"),
        ("Bytes = 1-2", b"12", "bytes 1-2/10"),
    ):
        r = registry.get(f"/v2/team/app/blobs/{digest}", headers=mint(ALL) | {"Range": header})
        assert r.status_code == 206
        assert r.content == body
        assert r.headers["content-range"] == content_range


def test_ranges_that_are_ignored(registry: TestClient, mint: Mint) -> None:
    # Another unit, or several ranges: the whole body, as RFC 9110 allows.
    digest = push_blob(registry, mint, b"0123456789")
    for header in ("items=0-1", "bytes=0-0,1-1", "bytes=0-1,100-200", "nonsense"):
        for method in ("GET", "HEAD"):
            r = registry.request(
                method, f"/v2/team/app/blobs/{digest}", headers=mint(ALL) | {"Range": header}
            )
            assert r.status_code == 200, (header, method)
            assert "content-range" not in r.headers
            assert r.headers["content-length"] == "10"
            assert r.content == (b"0123456789" if method == "GET" else b"")


@pytest.mark.parametrize(
    "header",
    ["0-", "abc", "5-2", "5-" + "9" * 5000, "0-" + "9" * 30, "\u0661-\u0662".encode(), "-1"],
)
def test_bad_content_range_on_patch(registry: TestClient, mint: Mint, header: str | bytes) -> None:
    start = registry.post("/v2/team/app/blobs/uploads/", headers=mint(ALL))
    location = start.headers["location"]
    r = registry.patch(location, content=b"abc", headers=mint(ALL) | {"Content-Range": header})
    assert r.status_code in (400, 416), r.text
    status = registry.get(location, headers=mint(ALL))
    assert status.status_code == 204
    assert status.headers["range"] == "0-0"


def test_out_of_order_chunk_is_416_and_keeps_data(registry: TestClient, mint: Mint) -> None:
    location = registry.post("/v2/team/app/blobs/uploads/", headers=mint(ALL)).headers["location"]
    first = registry.patch(location, content=b"abcd", headers=mint(ALL) | {"Content-Range": "0-3"})
    assert first.status_code == 202 and first.headers["range"] == "0-3"
    gap = registry.patch(location, content=b"zz", headers=mint(ALL) | {"Content-Range": "10-11"})
    assert gap.status_code == 416
    again = registry.patch(location, content=b"ef", headers=mint(ALL) | {"Content-Range": "4-5"})
    assert again.status_code == 202 and again.headers["range"] == "0-5"
    digest = "sha256:" + hashlib.sha256(b"abcdef").hexdigest()
    done = registry.put(f"{location}?digest={digest}", headers=mint(ALL))
    assert done.status_code == 201
    assert registry.get(f"/v2/team/app/blobs/{digest}", headers=mint(ALL)).content == b"abcdef"


def test_digest_mismatch_stores_nothing(
    registry: TestClient, mint: Mint, storage_root: Path
) -> None:
    wrong = "sha256:" + hashlib.sha256(b"other").hexdigest()
    r = registry.post(
        f"/v2/team/app/blobs/uploads/?digest={wrong}", content=b"data", headers=mint(ALL)
    )
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert registry.head(f"/v2/team/app/blobs/{wrong}", headers=mint(ALL)).status_code == 404
    blobs = storage_root / "docker/registry/v2/blobs"
    assert not blobs.exists() or not any(p.is_file() for p in blobs.rglob("*"))


def test_manifest_errors_leave_existing_tag_intact(registry: TestClient, mint: Mint) -> None:
    config = push_blob(registry, mint, b"{}")
    manifest = (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        b'"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"'
        + config.encode()
        + b'","size":2},"layers":[]}'
    )
    ct = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    assert (
        registry.put(
            "/v2/team/app/manifests/v1", content=manifest, headers=mint(ALL) | ct
        ).status_code
        == 201
    )

    for body, code, status in (
        (b"{not json", "MANIFEST_INVALID", 400),
        (b"[]", "MANIFEST_INVALID", 400),
        (manifest.replace(config.encode(), b"sha256:" + b"b" * 64), "MANIFEST_BLOB_UNKNOWN", 400),
    ):
        r = registry.put("/v2/team/app/manifests/v1", content=body, headers=mint(ALL) | ct)
        assert r.status_code == status, r.text
        assert r.json()["errors"][0]["code"] == code
    big = b'{"schemaVersion":2,"x":"' + b"a" * (4 * 1024 * 1024) + b'"}'
    r = registry.put("/v2/team/app/manifests/v1", content=big, headers=mint(ALL) | ct)
    assert r.status_code == 413

    got = registry.get("/v2/team/app/manifests/v1", headers=mint(ALL))
    assert got.status_code == 200 and got.content == manifest


def test_bad_tags_and_pagination(registry: TestClient, mint: Mint) -> None:
    # Pulling a reference that is neither tag nor digest finds nothing; pushing to one is refused.
    for method in ("GET", "HEAD"):
        r = registry.request(method, "/v2/team/app/manifests/-bad-tag", headers=mint(ALL))
        assert r.status_code == 404
    r = registry.get("/v2/team/app/manifests/-bad-tag", headers=mint(ALL))
    assert r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    r = registry.put("/v2/team/app/manifests/-bad-tag", content=b"{}", headers=mint(ALL))
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "TAG_INVALID"
    r = registry.put("/v2/team/app/manifests/sha256:bad", content=b"{}", headers=mint(ALL))
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    for path in ("/v2/team/app/tags/list", "/v2/_catalog"):
        scope = ALL if "tags" in path else "registry:catalog:*"
        for n in ("-1", "abc", "\u00b2", "%C2%B2", "1.5", " 1", "\u0661"):
            r = registry.get(f"{path}?n={n}", headers=mint(scope))
            assert r.status_code == 400, (path, n)
            assert r.json()["errors"][0]["code"] == "PAGINATION_NUMBER_INVALID"
        r = registry.get(f"{path}?n={'9' * 5000}", headers=mint(scope))
        assert r.status_code in (200, 404), r.text


def test_deletes_can_be_disabled(storage_root: Path, keys_dir: Path, mint: Mint) -> None:
    from registry_proxy.app import create_app
    from registry_proxy.config import Config

    config = Config.model_validate(
        {
            "storage": {"filesystem": {"rootdirectory": str(storage_root)}},
            "auth": {
                "token": {
                    "realm": "http://127.0.0.1:1/token",
                    "service": "registry",
                    "issuer": "test-issuer",
                    "rootcertbundle": str(keys_dir / "bundle.pem"),
                }
            },
        }
    )
    with TestClient(create_app(config)) as client:
        digest = push_blob(client, mint, b"keep me")
        r = client.delete(f"/v2/team/app/blobs/{digest}", headers=mint(ALL))
        assert r.status_code == 405
        assert r.json()["errors"][0]["code"] == "UNSUPPORTED"
        assert r.headers["allow"] == "GET, HEAD"
        assert client.get(f"/v2/team/app/blobs/{digest}", headers=mint(ALL)).content == b"keep me"


def test_unknown_paths_and_methods_use_the_error_envelope(registry: TestClient, mint: Mint) -> None:
    r = registry.get("/nowhere", headers=mint(ALL))
    assert r.status_code == 404
    assert r.json()["errors"][0]["code"] == "UNSUPPORTED"
    r = registry.post("/v2/team/app/tags/list", headers=mint(ALL))
    assert r.status_code == 405
    assert r.json()["errors"][0]["code"] == "UNSUPPORTED"


def test_every_answer_names_the_api_version(registry: TestClient, mint: Mint) -> None:
    for r in (
        registry.get("/v2/"),
        registry.get("/v2/", headers=mint()),
        registry.get("/v2/team/app/tags/list", headers=mint(ALL)),
        registry.get("/nowhere"),
    ):
        assert r.headers["docker-distribution-api-version"] == "registry/2.0"


@pytest.mark.parametrize(
    "path",
    [
        "/v2/team/../../../x/blobs/uploads/",
        "/v2/../x/blobs/uploads/",
        "/v2/team/app/blobs/uploads/../../../../x",
        "/v2/team/./app/blobs/uploads/",
    ],
)
def test_dot_segments_sent_raw_never_escape(
    registry: TestClient, mint: Mint, storage_root: Path, path: str
) -> None:
    status = raw_request(registry, "POST", path, mint(ALL))[0]
    assert status in (400, 404, 405)
    assert not (storage_root.parent / "x").exists()
    assert not (storage_root.parent.parent / "x").exists()


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"schemaVersion":2,"annotations":{"a":' + b"[" * 5000 + b"]" * 5000 + b"}}",
        b'{"schemaVersion":2,"size":' + b"9" * 5000 + b"}",
    ],
    ids=["deep-array", "deep-annotations", "huge-number"],
)
def test_hostile_manifest_json_is_manifest_invalid(
    registry: TestClient, mint: Mint, storage_root: Path, body: bytes
) -> None:
    before = snapshot(storage_root)
    ct = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    r = registry.put("/v2/team/app/manifests/deep", content=body, headers=mint(ALL) | ct)
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["code"] == "MANIFEST_INVALID"
    assert snapshot(storage_root) == before

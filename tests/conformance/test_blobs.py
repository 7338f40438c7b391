"""Blob uploads (monolithic, chunked, streamed), reads, ranges, mounts and deletes."""

from __future__ import annotations

import hashlib
import uuid

import httpx
import pytest

from tests.support.registry_client import (
    RegistryClient,
    error_codes,
    random_bytes,
    sha256_digest,
)

pytestmark = pytest.mark.e2e

OCTETS = {"Content-Type": "application/octet-stream"}


def start(client: RegistryClient, repo: str) -> str:
    """POST a new upload session; its Location, checked as SPEC E18 requires."""
    response = client.start_upload(repo)
    assert response.status_code == 202, response.text
    assert response.headers["location"]
    return response.headers["location"]


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert code in error_codes(response), response.text


def assert_blob(client: RegistryClient, repo: str, data: bytes) -> None:
    digest = sha256_digest(data)
    response = client.get_blob(repo, digest)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["docker-content-digest"] == digest
    assert int(response.headers["content-length"]) == len(data)


def close(client: RegistryClient, location: str, data: bytes, body: bytes = b"") -> httpx.Response:
    url = client.resolve(location, digest=sha256_digest(data))
    return client.http.put(url, content=body, headers=OCTETS if body else {})


def test_post_then_put(alice: RegistryClient, repo: str) -> None:
    data = random_bytes(2000)
    first = start(alice, repo)
    second = start(alice, repo)
    assert first != second  # each session is unique

    response = close(alice, first, data, body=data)
    assert response.status_code == 201
    assert response.headers["docker-content-digest"] == sha256_digest(data)
    # The Location is a pullable blob URL.
    pulled = alice.http.get(alice.resolve(response.headers["location"]))
    assert pulled.status_code == 200
    assert pulled.content == data
    assert_blob(alice, repo, data)


def test_single_post_with_digest_is_201_or_falls_back_to_202(
    alice: RegistryClient, repo: str
) -> None:
    data = random_bytes(700)
    response = alice.http.post(
        f"/v2/{repo}/blobs/uploads/",
        params={"digest": sha256_digest(data)},
        content=data,
        headers=OCTETS,
    )
    # Registries that do not support the single POST answer 202 with a session.
    assert response.status_code in (201, 202), response.text
    assert response.headers["location"]
    if response.status_code == 202:
        assert close(alice, response.headers["location"], data, body=data).status_code == 201
    assert_blob(alice, repo, data)


@pytest.mark.requires("monolithic-post")
def test_single_post_with_digest_creates_the_blob(alice: RegistryClient, repo: str) -> None:
    data = random_bytes(700)
    response = alice.http.post(
        f"/v2/{repo}/blobs/uploads/",
        params={"digest": sha256_digest(data)},
        content=data,
        headers=OCTETS,
    )
    assert response.status_code == 201, response.text
    assert alice.http.get(alice.resolve(response.headers["location"])).content == data
    assert_blob(alice, repo, data)


def test_chunked_upload_with_content_range(alice: RegistryClient, repo: str) -> None:
    data = random_bytes(3000)
    chunks = [data[:1000], data[1000:2500], data[2500:]]
    location = start(alice, repo)
    offset = 0
    for chunk in chunks[:-1]:
        end = offset + len(chunk) - 1
        response = alice.http.patch(
            alice.resolve(location),
            content=chunk,
            headers={**OCTETS, "Content-Range": f"{offset}-{end}"},
        )
        assert response.status_code == 202, response.text
        assert response.headers["range"] == f"0-{end}"
        location = response.headers["location"]
        offset = end + 1

    status = alice.http.get(alice.resolve(location))
    assert status.status_code == 204
    assert status.headers["range"] == f"0-{offset - 1}"
    assert status.headers["location"]

    last = chunks[-1]
    response = alice.http.put(
        alice.resolve(status.headers["location"], digest=sha256_digest(data)),
        content=last,
        headers={**OCTETS, "Content-Range": f"{offset}-{offset + len(last) - 1}"},
    )
    assert response.status_code == 201, response.text
    assert response.headers["location"]
    assert_blob(alice, repo, data)


def test_chunked_upload_closed_by_an_empty_put(alice: RegistryClient, repo: str) -> None:
    data = random_bytes(1500)
    location = start(alice, repo)
    for offset in (0, 750):
        response = alice.http.patch(
            alice.resolve(location),
            content=data[offset : offset + 750],
            headers={**OCTETS, "Content-Range": f"{offset}-{offset + 749}"},
        )
        assert response.status_code == 202
        location = response.headers["location"]
    assert close(alice, location, data).status_code == 201
    assert_blob(alice, repo, data)


def test_streamed_patch_without_content_range(alice: RegistryClient, repo: str) -> None:
    data = random_bytes(5000)
    location = start(alice, repo)
    response = alice.http.patch(alice.resolve(location), content=data[:2000])
    assert response.status_code == 202, response.text
    assert response.headers["range"] == "0-1999"
    # A second stream, sent chunked (no Content-Length), appends.
    response = alice.http.patch(
        alice.resolve(response.headers["location"]),
        content=iter([data[2000:4000], data[4000:]]),
    )
    assert response.status_code == 202, response.text
    assert response.headers["range"] == f"0-{len(data) - 1}"
    assert close(alice, response.headers["location"], data).status_code == 201
    assert_blob(alice, repo, data)


def test_upload_status(alice: RegistryClient, repo: str) -> None:
    location = start(alice, repo)
    response = alice.http.patch(alice.resolve(location), content=b"0123456789", headers=OCTETS)
    status = alice.http.get(alice.resolve(response.headers["location"]))
    assert status.status_code == 204
    assert status.headers["range"] == "0-9"
    assert status.headers["location"]
    assert status.content == b""


def test_cancel_upload(alice: RegistryClient, repo: str) -> None:
    location = start(alice, repo)
    response = alice.http.patch(alice.resolve(location), content=b"partial", headers=OCTETS)
    location = response.headers["location"]

    assert alice.http.delete(alice.resolve(location)).status_code == 204
    assert_error(alice.http.get(alice.resolve(location)), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(
        alice.http.patch(alice.resolve(location), content=b"more", headers=OCTETS),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )
    assert_error(close(alice, location, b"partial"), 404, "BLOB_UPLOAD_UNKNOWN")


def test_upload_id_never_issued_is_404(alice: RegistryClient, repo: str) -> None:
    response = alice.http.get(f"/v2/{repo}/blobs/uploads/{uuid.uuid4()}")
    assert response.status_code == 404


@pytest.mark.requires("strict-upload-unknown")
@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_upload_id_never_issued_is_blob_upload_unknown(
    alice: RegistryClient, repo: str, method: str
) -> None:
    params = {"digest": sha256_digest(b"x")} if method == "PUT" else {}
    response = alice.http.request(
        method, f"/v2/{repo}/blobs/uploads/{uuid.uuid4()}", params=params, content=b"x"
    )
    assert_error(response, 404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.requires("strict-chunk-order")
def test_out_of_order_chunk_is_416(alice: RegistryClient, repo: str) -> None:
    location = start(alice, repo)
    response = alice.http.patch(
        alice.resolve(location), content=b"abcd", headers={**OCTETS, "Content-Range": "0-3"}
    )
    assert response.status_code == 202
    location = response.headers["location"]

    gap = alice.http.patch(
        alice.resolve(location), content=b"wxyz", headers={**OCTETS, "Content-Range": "10-13"}
    )
    assert gap.status_code == 416
    overlap = alice.http.patch(
        alice.resolve(location), content=b"wxyz", headers={**OCTETS, "Content-Range": "2-5"}
    )
    assert overlap.status_code == 416

    # The session survives: its status still says 0-3 and it can finish.
    status = alice.http.get(alice.resolve(location))
    assert status.status_code == 204
    assert status.headers["range"] == "0-3"
    response = alice.http.put(
        alice.resolve(status.headers["location"], digest=sha256_digest(b"abcdefgh")),
        content=b"efgh",
        headers={**OCTETS, "Content-Range": "4-7"},
    )
    assert response.status_code == 201
    assert_blob(alice, repo, b"abcdefgh")


@pytest.mark.requires("strict-chunk-order")
def test_out_of_order_final_chunk_is_416(alice: RegistryClient, repo: str) -> None:
    location = start(alice, repo)
    response = alice.http.patch(
        alice.resolve(location), content=b"abcd", headers={**OCTETS, "Content-Range": "0-3"}
    )
    response = alice.http.put(
        alice.resolve(response.headers["location"], digest=sha256_digest(b"abcdefgh")),
        content=b"efgh",
        headers={**OCTETS, "Content-Range": "5-8"},
    )
    assert response.status_code == 416


def test_digest_mismatch_is_digest_invalid(alice: RegistryClient, repo: str) -> None:
    location = start(alice, repo)
    url = alice.resolve(location, digest=sha256_digest(b"something else"))
    response = alice.http.put(url, content=b"the real content", headers=OCTETS)
    assert_error(response, 400, "DIGEST_INVALID")
    assert alice.head_blob(repo, sha256_digest(b"the real content")).status_code == 404


@pytest.mark.parametrize(
    "digest",
    ["md5:" + hashlib.md5(b"data").hexdigest(), "sha256:xyz", "sha256", "nonsense"],  # noqa: S324
    ids=["md5", "bad-hex", "no-hex", "no-algorithm"],
)
def test_unsupported_or_malformed_digest_is_400(
    alice: RegistryClient, repo: str, digest: str
) -> None:
    location = start(alice, repo)
    response = alice.http.put(alice.resolve(location, digest=digest), content=b"data")
    assert response.status_code == 400, response.text
    assert error_codes(response)


def test_put_without_digest_is_400(alice: RegistryClient, repo: str) -> None:
    location = start(alice, repo)
    response = alice.http.put(alice.resolve(location), content=b"data", headers=OCTETS)
    assert response.status_code == 400


def test_head_and_get_blob(alice: RegistryClient, repo: str) -> None:
    data = random_bytes(4096)
    digest = alice.push_blob(repo, data)

    head = alice.head_blob(repo, digest)
    assert head.status_code == 200
    assert head.headers["docker-content-digest"] == digest
    assert int(head.headers["content-length"]) == len(data)
    assert head.content == b""

    get = alice.get_blob(repo, digest)
    assert get.status_code == 200
    assert get.content == data
    assert sha256_digest(get.content) == get.headers["docker-content-digest"] == digest
    assert int(get.headers["content-length"]) == len(data)


@pytest.mark.parametrize(
    ("header", "start_", "end"),
    [("bytes=100-199", 100, 199), ("bytes=4000-", 4000, 4095), ("bytes=-96", 4000, 4095)],
    ids=["middle", "open-end", "suffix"],
)
def test_range_get(alice: RegistryClient, repo: str, header: str, start_: int, end: int) -> None:
    data = random_bytes(4096)
    digest = alice.push_blob(repo, data)
    response = alice.get_blob(repo, digest, headers={"Range": header})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {start_}-{end}/{len(data)}"
    assert response.content == data[start_ : end + 1]
    assert int(response.headers["content-length"]) == end - start_ + 1


def test_unknown_blob(alice: RegistryClient, repo: str) -> None:
    alice.push_blob(repo, b"so that the repository exists")
    digest = sha256_digest(b"never pushed")
    assert_error(alice.get_blob(repo, digest), 404, "BLOB_UNKNOWN")
    assert alice.head_blob(repo, digest).status_code == 404
    # Nor in a repository that does not exist.
    assert alice.get_blob(repo + "-nowhere", digest).status_code == 404


def test_blob_of_another_repository_is_not_served(alice: RegistryClient, repo: str) -> None:
    digest = alice.push_blob(repo, random_bytes(100))
    assert_error(alice.get_blob(repo + "-other", digest), 404, "BLOB_UNKNOWN")


def test_cross_repository_mount(alice: RegistryClient, repo: str) -> None:
    data = random_bytes(1234)
    digest = alice.push_blob(repo + "-src", data)
    response = alice.mount_blob(repo, digest, repo + "-src")
    assert response.status_code == 201, response.text
    assert response.headers["docker-content-digest"] == digest
    assert alice.http.get(alice.resolve(response.headers["location"])).content == data
    assert_blob(alice, repo, data)


def test_mount_of_a_missing_blob_falls_back_to_an_upload(alice: RegistryClient, repo: str) -> None:
    alice.push_blob(repo + "-src", b"something")
    data = random_bytes(300)
    response = alice.mount_blob(repo, sha256_digest(data), repo + "-src")
    assert response.status_code == 202, response.text
    # The answer is a fresh upload session: finish it.
    assert close(alice, response.headers["location"], data, body=data).status_code == 201
    assert_blob(alice, repo, data)


def test_delete_blob(alice: RegistryClient, repo: str) -> None:
    data = random_bytes(256)
    digest = alice.push_blob(repo, data)
    assert alice.mount_blob(f"{repo}-copy", digest, repo).status_code == 201

    response = alice.delete_blob(repo, digest)
    assert response.status_code == 202
    assert alice.head_blob(repo, digest).status_code == 404
    assert_error(alice.get_blob(repo, digest), 404, "BLOB_UNKNOWN")
    assert_error(alice.delete_blob(repo, digest), 404, "BLOB_UNKNOWN")
    # Only this repository's link went away.
    assert_blob(alice, f"{repo}-copy", data)


@pytest.mark.parametrize(
    "reference",
    ["sha256:abc", "sha256:" + "z" * 64, "md5:" + "0" * 32, "notadigest", "sha256:"],
)
@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
def test_malformed_blob_digest_is_400_or_404(
    alice: RegistryClient, repo: str, method: str, reference: str
) -> None:
    alice.push_blob(repo, b"exists")
    response = alice.http.request(method, f"/v2/{repo}/blobs/{reference}")
    assert response.status_code in (400, 404), response.text
    if method != "HEAD" and response.headers.get("content-type", "").startswith("application/json"):
        assert set(error_codes(response)) <= {"DIGEST_INVALID", "BLOB_UNKNOWN", "NAME_UNKNOWN"}


def test_upload_locations_are_unique_sessions(alice: RegistryClient, repo: str) -> None:
    locations = [start(alice, repo) for _ in range(4)]
    assert len(set(locations)) == len(locations)
    for location in locations:
        status = alice.http.get(alice.resolve(location))
        assert status.status_code == 204
        assert status.headers["location"]

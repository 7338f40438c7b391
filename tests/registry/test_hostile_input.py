"""Hostile requests against a real registry_proxy process.

Every probe gets its exact spec answer (status, and for errors the OCI error
envelope with the expected code), never a 5xx; the process logs no crash or
error; and the blobs, manifests and tags stored before the probes are byte for
byte what they were. Requests are written to the socket by hand, so nothing
is normalised or re-encoded on the way.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.minter import (
    ISSUER,
    OCI_MANIFEST,
    SERVICE,
    Minter,
    log_problems,
    push_image,
    sha256,
)
from tests.support.registry_proxy import RegistryProxy
from tokenserver.jws import CompactSigner
from tokenserver.keys import load_keys

REPO = "team/app"
SCOPE = f"repository:{REPO}:pull,push,delete"
CATALOG = "registry:catalog:*"
HUGE = "9" * 5000  # Past Python's 4300-digit int() limit.
SUPERSCRIPT_TWO = "%C2%B2"  # '²': str.isdigit() says yes, int() says no.
ARABIC_ONE = "\u0661".encode()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def codes(self) -> list[str]:
        return [e["code"] for e in json.loads(self.body)["errors"]]


def send(
    port: int, method: str, target: str, headers: dict[str, str | bytes], body: bytes = b""
) -> Answer:
    """One HTTP/1.1 request exactly as given, on its own connection."""
    lines = [f"{method} {target} HTTP/1.1".encode(), f"Host: 127.0.0.1:{port}".encode()]
    for name, value in headers.items():
        lines.append(
            name.encode() + b": " + (value if isinstance(value, bytes) else value.encode())
        )
    if body or method in ("PUT", "PATCH", "POST"):
        lines.append(f"Content-Length: {len(body)}".encode())
    lines.append(b"Connection: close")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
    head, _, rest = bytes(received).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    if parsed.get("transfer-encoding") == "chunked":
        rest = _unchunk(rest)
    return Answer(int(status_line.split()[1]), parsed, rest)


def _unchunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)


@dataclass
class Stored:
    """The registry under attack and what it held before."""

    proxy: RegistryProxy
    minter: Minter
    manifest: bytes
    digest: str
    blob: bytes
    blob_digest: str
    upload: str
    before: dict[str, bytes] = field(default_factory=dict)

    def auth(self, *scopes: str) -> dict[str, str | bytes]:
        return dict(self.minter.headers(*(scopes or (SCOPE,))))

    def send(
        self,
        method: str,
        target: str,
        headers: dict[str, str | bytes] | None = None,
        body: bytes = b"",
        scopes: tuple[str, ...] = (),
    ) -> Answer:
        return send(self.proxy.port, method, target, self.auth(*scopes) | (headers or {}), body)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every stored file but upload sessions (which probes may open) and the trash."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "_uploads" not in p.parts and p.parts[len(root.parts)] != "_trash"
    }


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory, real_peer: None) -> Iterator[Stored]:
    base = tmp_path_factory.mktemp("hostile")
    minter = Minter(base / "keys")
    with RegistryProxy(base / "proxy", minter.token_auth) as proxy:
        headers = minter.headers(SCOPE)
        with httpx.Client(base_url=proxy.url, timeout=30, trust_env=False) as client:
            manifest, digest = push_image(client, REPO, "v1", headers, seed=b"hostile")
            r = client.put(
                f"/v2/{REPO}/manifests/v2",
                content=manifest,
                headers=headers | {"Content-Type": OCI_MANIFEST},
            )
            assert r.status_code == 201
            blob = b"0123456789"
            blob_digest = sha256(blob)
            r = client.post(
                f"/v2/{REPO}/blobs/uploads/?digest={blob_digest}", content=blob, headers=headers
            )
            assert r.status_code == 201
            r = client.post(f"/v2/{REPO}/blobs/uploads/", headers=headers)
            assert r.status_code == 202
            upload = r.headers["docker-upload-uuid"]
        state = Stored(proxy, minter, manifest, digest, blob, blob_digest, upload)
        state.before = snapshot(proxy.root)
        yield state


def assert_error(answer: Answer, status: int, code: str | None, head: bool = False) -> None:
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.headers.get("docker-distribution-api-version") == "registry/2.0"
    if head:
        assert answer.body == b""
        return
    assert answer.headers["content-type"].startswith("application/json")
    envelope = json.loads(answer.body)
    assert set(envelope) == {"errors"}
    assert all(isinstance(e["message"], str) for e in envelope["errors"])
    if code is not None:
        assert answer.codes() == [code]


# -- pagination ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v2/_catalog", f"/v2/{REPO}/tags/list"])
@pytest.mark.parametrize("n", [SUPERSCRIPT_TWO, "%D9%A1", "-1", "1e3", "0x10", "%201", "1.0"])
def test_page_sizes_that_are_not_ascii_numbers(stored: Stored, path: str, n: str) -> None:
    answer = stored.send("GET", f"{path}?n={n}", scopes=(SCOPE, CATALOG))
    assert_error(answer, 400, "PAGINATION_NUMBER_INVALID")


def test_a_huge_page_size_is_the_largest_page(stored: Stored) -> None:
    answer = stored.send("GET", f"/v2/{REPO}/tags/list?n={HUGE}")
    assert answer.status == 200
    assert json.loads(answer.body) == {"name": REPO, "tags": ["v1", "v2"]}
    answer = stored.send("GET", f"/v2/_catalog?n={HUGE}", scopes=(CATALOG,))
    assert answer.status == 200
    assert json.loads(answer.body) == {"repositories": [REPO]}
    assert "link" not in answer.headers


# -- ranges --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize(
    "value",
    [
        f"bytes={HUGE}".encode(),
        f"bytes={HUGE}-".encode(),
        f"bytes={HUGE}-{HUGE}".encode(),
        b"bytes=" + ARABIC_ONE + b"-" + ARABIC_ONE,
        b"bytes=5-2",
        b"bytes=-0",
        b"bytes=10-,20-30",
    ],
)
def test_unsatisfiable_or_malformed_ranges_are_416(
    stored: Stored, method: str, value: bytes
) -> None:
    answer = stored.send(method, f"/v2/{REPO}/blobs/{stored.blob_digest}", {"Range": value})
    assert_error(answer, 416, "RANGE_INVALID", head=method == "HEAD")
    assert answer.headers["content-range"] == f"bytes */{len(stored.blob)}"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize(
    ("value", "status", "body"),
    [
        ("items=0-1", 200, b"0123456789"),
        ("bytes=0-0,1-1", 200, b"0123456789"),
        ("bytes=0-3,100-200", 200, b"0123456789"),
        (f"bytes=4-{HUGE}", 206, b"456789"),
        (f"bytes=-{HUGE}", 206, b"0123456789"),
    ],
)
def test_ranges_answered_whole_or_clamped(
    stored: Stored, method: str, value: str, status: int, body: bytes
) -> None:
    answer = stored.send(method, f"/v2/{REPO}/blobs/{stored.blob_digest}", {"Range": value})
    assert answer.status == status
    assert answer.headers["content-length"] == str(len(body))
    assert answer.body == (body if method == "GET" else b"")
    if status == 206:
        end = len(stored.blob) - 1
        assert answer.headers["content-range"] == f"bytes {end + 1 - len(body)}-{end}/{end + 1}"


@pytest.mark.parametrize(
    ("value", "status", "code"),
    [
        (f"5-{HUGE}".encode(), 416, "RANGE_INVALID"),
        (f"0-{HUGE}".encode(), 416, "RANGE_INVALID"),
        (f"{HUGE}-{HUGE}".encode(), 416, "RANGE_INVALID"),
        (ARABIC_ONE + b"-" + ARABIC_ONE, 416, "BLOB_UPLOAD_INVALID"),
        (b"0-99", 400, "SIZE_INVALID"),
    ],
)
def test_hostile_content_ranges_leave_the_upload_as_it_was(
    stored: Stored, value: bytes, status: int, code: str
) -> None:
    location = f"/v2/{REPO}/blobs/uploads/{stored.upload}"
    answer = stored.send("PATCH", location, {"Content-Range": value}, body=b"abc")
    assert_error(answer, status, code)
    after = stored.send("GET", location)
    assert after.status == 204 and after.headers["range"] == "0-0"


# -- manifests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"schemaVersion":2,"a":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001,
        b'{"schemaVersion":2,"mediaType":"'
        + OCI_MANIFEST.encode()
        + b'","annotations":{"x":'
        + b"[" * 3000
        + b"]" * 3000
        + b"}}",
        b'{"schemaVersion":2,"config":{"size":' + HUGE.encode() + b"}}",
        b"\xff\xfe{}",
    ],
    ids=["deep-array", "deep-object", "deep-annotations", "huge-number", "not-utf8"],
)
@pytest.mark.parametrize("tag", ["v1", "new"])
def test_hostile_manifest_bodies_are_manifest_invalid(
    stored: Stored, body: bytes, tag: str
) -> None:
    answer = stored.send(
        "PUT", f"/v2/{REPO}/manifests/{tag}", {"Content-Type": OCI_MANIFEST}, body=body
    )
    assert_error(answer, 400, "MANIFEST_INVALID")


@pytest.mark.parametrize(
    "reference", [".INVALID_MANIFEST_NAME", "-dash", "t" * 129, "%C3%A4", "a%20b"]
)
def test_pulling_a_non_reference_finds_nothing(stored: Stored, reference: str) -> None:
    path = f"/v2/{REPO}/manifests/{reference}"
    assert_error(stored.send("GET", path), 404, "MANIFEST_UNKNOWN")
    assert_error(stored.send("HEAD", path), 404, None, head=True)


@pytest.mark.parametrize(
    ("reference", "code"),
    [
        ("sha256:baddigeststring", "DIGEST_INVALID"),
        ("sha256:" + "A" * 64, "DIGEST_INVALID"),
        ("md5:" + "0" * 32, "DIGEST_INVALID"),
        ("-dash", "TAG_INVALID"),
        ("%C3%A4", "TAG_INVALID"),
    ],
)
def test_pushing_to_a_malformed_reference(stored: Stored, reference: str, code: str) -> None:
    answer = stored.send(
        "PUT",
        f"/v2/{REPO}/manifests/{reference}",
        {"Content-Type": OCI_MANIFEST},
        body=stored.manifest,
    )
    assert_error(answer, 400, code)


def test_pushing_with_a_malformed_tag_parameter(stored: Stored) -> None:
    answer = stored.send(
        "PUT",
        f"/v2/{REPO}/manifests/{stored.digest}?tag=ok&tag=%C2%B2",
        {"Content-Type": OCI_MANIFEST},
        body=stored.manifest,
    )
    assert_error(answer, 400, "TAG_INVALID")


@pytest.mark.parametrize(
    ("reference", "status", "code"),
    [
        ("sha256:zz", 404, "MANIFEST_UNKNOWN"),
        ("sha256:" + "0" * 64, 404, "MANIFEST_UNKNOWN"),
        ("-dash", 400, "TAG_INVALID"),
        ("nosuchtag", 404, "MANIFEST_UNKNOWN"),
    ],
)
def test_deleting_what_is_not_there(stored: Stored, reference: str, status: int, code: str) -> None:
    assert_error(stored.send("DELETE", f"/v2/{REPO}/manifests/{reference}"), status, code)


# -- names, digests, upload ids, credentials -----------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["team/%C3%A4pp", "team/" + "a" * 300, "Team/App", "team/a..b", "team/%00", "team/a%5cb"],
)
@pytest.mark.parametrize("path", ["tags/list", "manifests/v1", "blobs/uploads/"])
def test_malformed_names(stored: Stored, name: str, path: str) -> None:
    method = "POST" if path.startswith("blobs") else "GET"
    assert_error(stored.send(method, f"/v2/{name}/{path}"), 400, "NAME_INVALID")


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256:" + "a" * 5000,
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha256:%C2%B2" + "a" * 63,
        "nonsense",
    ],
)
@pytest.mark.parametrize("where", ["blobs", "referrers"])
def test_malformed_digests(stored: Stored, digest: str, where: str) -> None:
    assert_error(stored.send("GET", f"/v2/{REPO}/{where}/{digest}"), 400, "DIGEST_INVALID")
    if where == "blobs":
        assert_error(stored.send("DELETE", f"/v2/{REPO}/blobs/{digest}"), 400, "DIGEST_INVALID")


def test_malformed_mounts_and_upload_digests(stored: Stored) -> None:
    answer = stored.send("POST", f"/v2/{REPO}/blobs/uploads/?mount={stored.blob_digest}&from=A/B")
    assert_error(answer, 400, "NAME_INVALID")
    answer = stored.send("POST", f"/v2/{REPO}/blobs/uploads/?mount=sha256:zz&from=team/other")
    assert_error(answer, 400, "DIGEST_INVALID")
    answer = stored.send("POST", f"/v2/{REPO}/blobs/uploads/?digest=sha256:{HUGE}", body=b"x")
    assert_error(answer, 400, "DIGEST_INVALID")


@pytest.mark.parametrize(
    "upload_id",
    ["not-a-uuid", "0" * 5000, "%C2%B2", "%2e%2e", "00000000-0000-0000-0000-000000000000"],
)
@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_unknown_upload_ids(stored: Stored, upload_id: str, method: str) -> None:
    target = f"/v2/{REPO}/blobs/uploads/{upload_id}?digest={stored.blob_digest}"
    assert_error(stored.send(method, target), 404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize(
    "authorization",
    [
        b"Bearer \xff\xfe\xfd",
        b"Bearer " + b"a" * 6000,
        b"Bearer a.b.c",
        b"Basic \xc3\xa4",
        b"Bearer",
    ],
)
def test_garbage_credentials_are_challenged(stored: Stored, authorization: bytes) -> None:
    answer = send(
        stored.proxy.port, "GET", f"/v2/{REPO}/tags/list", {"Authorization": authorization}
    )
    assert_error(answer, 401, "UNAUTHORIZED")
    assert answer.headers["www-authenticate"].startswith("Bearer realm=")


@pytest.mark.parametrize(
    "target",
    ["/v2/../../etc/passwd/blobs/uploads/", "/v2/team/%2e%2e/%2e%2e/x/blobs/uploads/", "/v2//a/b"],
)
def test_paths_that_try_to_leave_the_root(stored: Stored, target: str) -> None:
    answer = stored.send("POST", target)
    assert answer.status in (400, 404), answer.body
    assert_error(answer, answer.status, None)
    assert not (stored.proxy.root.parent / "x").exists()


# -- tokens signed by a trusted key, with an alg or times that are wrong ----------------------


def _signed(stored: Stored, alg: object = "ES256", **claims: object) -> bytes:
    """A token of the registry's own issuer, signed by the key it trusts, but for `claims`."""
    signing = load_keys(stored.minter.keys_dir).signing
    now = int(time.time())
    pull = [{"type": "repository", "name": REPO, "actions": ["pull"]}]
    base = {"iss": ISSUER, "aud": SERVICE, "sub": "tester", "iat": now, "nbf": now,
            "exp": now + 300, "access": pull}  # fmt: skip
    token = CompactSigner(signing.private, "ES256", {"kid": signing.kid}).sign(base | claims)
    if alg != "ES256":  # relabelled: the signature stays the EC key's
        head, body, signature = token.split(".")
        header = json.loads(base64.urlsafe_b64decode(head + "==")) | {"alg": alg}
        head = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
        token = f"{head}.{body}.{signature}"
    return b"Bearer " + token.encode()


@pytest.mark.parametrize(
    ("alg", "claims"),
    [
        ("RS256", {}),  # naming the EC key: PyJWT's TypeError
        (["ES256"], {}),  # no algorithm, and unhashable
        ("ES256", {"exp": float("nan")}),  # never expired; then int(NaN)
        ("ES256", {"exp": float("inf")}),
        ("ES256", {"exp": True}),
        ("ES256", {"exp": 10**400}),
        ("ES256", {"nbf": float("nan")}),
        ("ES256", {"iat": float("-inf")}),
    ],
    ids=lambda v: repr(v)[:24],
)
def test_tokens_with_an_unfit_alg_or_times_that_are_no_numbers(
    stored: Stored, alg: object, claims: dict[str, object]
) -> None:
    def tags(authorization: bytes) -> Answer:
        return send(
            stored.proxy.port, "GET", f"/v2/{REPO}/tags/list", {"Authorization": authorization}
        )

    assert tags(_signed(stored)).status == 200  # the control: only what is varied is wrong
    answer = tags(_signed(stored, alg, **claims))
    assert_error(answer, 401, "UNAUTHORIZED")
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]


# -- referrer pages and upload slots ---------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("last=" + "z" * 5000, 400),
        ("last=%C3%A9t%C3%A9", 200),
        ("last=%00", 200),
        ("artifactType=" + "a" * 5000, 200),
        ("artifactType=%FF%FE", 200),
        ("last=sha256:" + "f" * 64 + "&last=" + "0" * 10, 200),
    ],
)
def test_referrer_page_parameters(stored: Stored, query: str, status: int) -> None:
    answer = stored.send("GET", f"/v2/{REPO}/referrers/{stored.digest}?{query}")
    if status == 400:
        assert_error(answer, 400, "PAGINATION_NUMBER_INVALID")
        return
    assert answer.status == 200, answer.body[:300]
    assert json.loads(answer.body)["manifests"] == []
    assert "link" not in answer.headers


def test_an_upload_past_its_slots_is_refused_before_its_body(stored: Stored) -> None:
    """Each a PATCH announcing 100 MiB and sending none of it: the slots' refusal is at once."""
    limit = 64  # http.max_uploads_per_subject, as the README gives it
    socks = []
    token = stored.auth(SCOPE)["Authorization"]
    head = (
        f"PATCH /v2/{REPO}/blobs/uploads/{stored.upload} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {token!s}\r\nContent-Length: {100 * 1024 * 1024}\r\n\r\n"
    ).encode()
    try:
        for number in range(limit + 1):
            if number == limit:
                time.sleep(1)  # the others have taken their slots by now
            sock = socket.create_connection(("127.0.0.1", stored.proxy.port), timeout=30)
            sock.sendall(head)
            socks.append(sock)
        last = socks[-1]
        last.settimeout(10)
        answer = last.recv(65536)
        assert answer.startswith(b"HTTP/1.1 429"), answer[:200]
        assert b"retry-after: 5" in answer.lower() and b"connection: close" in answer.lower()
    finally:
        for sock in socks:
            sock.close()


# -- afterwards ---------------------------------------------------------------------------


def test_afterwards_nothing_stored_changed_and_nothing_crashed(stored: Stored) -> None:
    """Runs last in this module: the sum of every probe above."""
    assert snapshot(stored.proxy.root) == stored.before
    for tag in ("v1", "v2"):
        answer = stored.send("GET", f"/v2/{REPO}/manifests/{tag}", {"Accept": OCI_MANIFEST})
        assert answer.status == 200 and answer.body == stored.manifest
    answer = stored.send("GET", f"/v2/{REPO}/tags/list")
    assert json.loads(answer.body)["tags"] == ["v1", "v2"]
    problems = log_problems(stored.proxy.log_text())
    assert not problems, "\n".join(problems[:5])

"""Our registry in front of an upstream that answers what no honest registry does.

Every hostile answer becomes a 4xx/5xx in the OCI envelope within the upstream timeout,
nothing of it is stored, and the upstream's credentials go nowhere but to it (never into a
log record). The upstream is a fake on 127.0.0.1 (and 127.0.0.2, another host).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from registry_proxy.app import create_app
from registry_proxy.config import Config
from tests.registry.conftest import Mint, token_auth
from tests.support.fake_upstream import Answer, FakeUpstream, Seen

UPSTREAM_PASSWORD = "upstream-pw-31337"
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + "a" * 64,
            "size": 2,
        },
        "layers": [],
    }
).encode()
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
BLOB = b"blob bytes " * 1000
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
OCI = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def ttl() -> str:
    return "168h"


@pytest.fixture
def ours(
    upstream: FakeUpstream, storage_root: Path, keys_dir: Path, ttl: str
) -> Iterator[TestClient]:
    config = Config.model_validate(
        {
            "storage": {"filesystem": {"rootdirectory": str(storage_root)}},
            "auth": token_auth(keys_dir),
            "upstreams": [
                {
                    "prefix": "up",
                    "url": upstream.origin,
                    "username": "puller",
                    "password": UPSTREAM_PASSWORD,
                    "timeout": 2,
                    "ttl": ttl,
                    "repositories": ["team/*"],
                }
            ],
        }
    )
    with TestClient(create_app(config)) as client:
        yield client


def _error(answer: Any) -> str:
    body = answer.json()
    assert set(body) == {"errors"}, body
    return str(body["errors"][0]["code"])


def _stored(storage_root: Path) -> list[str]:
    return sorted(str(p.relative_to(storage_root)) for p in storage_root.rglob("data"))


def _no_secret_logged(caplog: pytest.LogCaptureFixture) -> None:
    logged = "\n".join(r.getMessage() + repr(vars(r)) for r in caplog.records)
    assert UPSTREAM_PASSWORD not in logged


def _answers(**by_path: Answer) -> Any:
    def answer(seen: Seen) -> Answer:
        for part, found in by_path.items():
            if part.replace("_", "/") in seen.path:
                return found
        return Answer(404, {"Content-Type": "application/json"}, b'{"errors":[]}')

    return answer


@pytest.mark.parametrize(
    ("what", "answer", "status", "code"),
    [
        ("other bytes", Answer(200, {"Content-Type": OCI}, MANIFEST + b" "), 502, "UNAVAILABLE"),
        (
            "a 10 GB length",
            Answer(200, {"Content-Type": OCI, "Content-Length": str(10 << 30)}, iter([MANIFEST])),
            502,
            "UNAVAILABLE",
        ),
        ("a 500", Answer(500, {}, b"oops"), 503, "UNAVAILABLE"),
        ("a 429", Answer(429, {"Retry-After": "17"}, b""), 429, "TOOMANYREQUESTS"),
        (
            "a malformed challenge",
            Answer(401, {"WWW-Authenticate": 'Bearer realm="x' + "\\" * 9000}, b""),
            502,
            "UNAVAILABLE",
        ),
        (
            "a realm of another scheme",
            Answer(401, {"WWW-Authenticate": 'Bearer realm="file:///etc/passwd"'}, b""),
            502,
            "UNAVAILABLE",
        ),
        ("not found", Answer(404, {}, b""), 404, "MANIFEST_UNKNOWN"),
        (
            "a redirect loop",
            Answer(302, {"Location": "/v2/team/app/manifests/x"}, b""),
            502,
            "UNAVAILABLE",
        ),
    ],
)
def test_hostile_manifest_answers_are_errors_in_the_envelope_and_nothing_is_stored(
    ours: TestClient,
    upstream: FakeUpstream,
    mint: Mint,
    storage_root: Path,
    caplog: pytest.LogCaptureFixture,
    what: str,
    answer: Answer,
    status: int,
    code: str,
) -> None:
    upstream.answer = lambda seen: answer
    headers = mint("repository:up/team/app:pull")
    got = ours.get(f"/v2/up/team/app/manifests/{MANIFEST_DIGEST}", headers=headers)
    assert (got.status_code, _error(got)) == (status, code), (what, got.text)
    if code == "TOOMANYREQUESTS":
        assert got.headers["retry-after"] == "17"
    assert _stored(storage_root) == []
    _no_secret_logged(caplog)


def test_a_trickling_upstream_is_cut_at_its_timeout(
    ours: TestClient, upstream: FakeUpstream, mint: Mint, storage_root: Path
) -> None:
    def trickle() -> Iterator[bytes]:
        for byte in MANIFEST:
            time.sleep(0.2)
            yield bytes([byte])

    upstream.answer = lambda seen: Answer(
        200, {"Content-Type": OCI, "Content-Length": str(len(MANIFEST))}, trickle()
    )
    started = time.monotonic()
    got = ours.get(
        f"/v2/up/team/app/manifests/{MANIFEST_DIGEST}", headers=mint("repository:up/team/app:pull")
    )
    assert time.monotonic() - started < 10
    assert (got.status_code, _error(got)) == (503, "UNAVAILABLE")
    assert _stored(storage_root) == []


def test_credentials_go_to_the_upstream_only_never_where_it_redirects(
    ours: TestClient, upstream: FakeUpstream, mint: Mint, storage_root: Path
) -> None:
    with FakeUpstream("127.0.0.2") as elsewhere:
        elsewhere.answer = lambda seen: Answer(200, {}, BLOB)

        def answer(seen: Seen) -> Answer:
            if "authorization" not in seen.headers:
                return Answer(401, {"WWW-Authenticate": 'Basic realm="up"'}, b"")
            return Answer(307, {"Location": f"{elsewhere.origin}/signed/blob?sig=1"}, b"")

        upstream.answer = answer
        got = ours.get(
            f"/v2/up/team/app/blobs/{BLOB_DIGEST}", headers=mint("repository:up/team/app:pull")
        )
        assert got.status_code == 200 and got.content == BLOB
        assert [s.headers.get("authorization") for s in elsewhere.seen] == [None]
        assert any("authorization" in s.headers for s in upstream.seen)
    # Stored: served again without the upstream.
    upstream.answer = lambda seen: Answer(500, {}, b"")
    again = ours.get(
        f"/v2/up/team/app/blobs/{BLOB_DIGEST}", headers=mint("repository:up/team/app:pull")
    )
    assert again.status_code == 200 and again.content == BLOB


@pytest.mark.parametrize(
    "answer",
    [
        Answer(200, {}, BLOB[:-1] + b"X"),  # other bytes
        Answer(200, {"Content-Length": str(10 << 30)}, iter([BLOB])),  # far less than it said
        Answer(200, {}, iter([BLOB[:100], b""])),  # chunked, short
    ],
)
def test_a_blob_not_matching_its_digest_is_refused_and_not_stored(
    ours: TestClient, upstream: FakeUpstream, mint: Mint, storage_root: Path, answer: Answer
) -> None:
    upstream.answer = lambda seen: answer
    headers = mint("repository:up/team/app:pull")
    # A HEAD waits for the fetch into storage, so its answer says how that went.
    got = ours.head(f"/v2/up/team/app/blobs/{BLOB_DIGEST}", headers=headers)
    assert 400 <= got.status_code < 600 and got.status_code != 500, got.status_code
    assert not [p for p in _stored(storage_root) if "blobs" in p and "_uploads" not in p]


def test_names_outside_repositories_and_writes_never_reach_the_upstream(
    ours: TestClient, upstream: FakeUpstream, mint: Mint
) -> None:
    headers = mint("repository:up/other/app:pull,push,delete")
    got = ours.get("/v2/up/other/app/manifests/v1", headers=headers)
    assert (got.status_code, _error(got)) == (404, "NAME_UNKNOWN")
    pushed = ours.put(
        "/v2/up/other/app/manifests/v1", content=MANIFEST, headers={**headers, "Content-Type": OCI}
    )
    assert (pushed.status_code, _error(pushed)) == (405, "UNSUPPORTED")
    started = ours.post(
        "/v2/up/team/app/blobs/uploads/", headers=mint("repository:up/team/app:push")
    )
    assert (started.status_code, _error(started)) == (405, "UNSUPPORTED")
    assert upstream.seen == []


@pytest.mark.parametrize(
    "ns", ["x" * 20_000, "ghcr.io\x00", "döcker.io", "127.0.0.1:1/../..", "%00", ""]
)
def test_hostile_ns_parameters_are_local_names(
    ours: TestClient, upstream: FakeUpstream, mint: Mint, ns: str
) -> None:
    got = ours.get(
        "/v2/team/app/manifests/v1", params={"ns": ns}, headers=mint("repository:team/app:pull")
    )
    assert got.status_code == 404 and _error(got) in {"MANIFEST_UNKNOWN", "NAME_UNKNOWN"}
    assert upstream.seen == []


def test_the_upstreams_host_in_ns_routes_there(
    ours: TestClient, upstream: FakeUpstream, mint: Mint
) -> None:
    upstream.answer = lambda seen: Answer(200, {"Content-Type": OCI}, MANIFEST)
    host = upstream.origin.removeprefix("http://")
    # The token must be for the name here: the prefix and the name there.
    refused = ours.get(
        f"/v2/team/app/manifests/{MANIFEST_DIGEST}",
        params={"ns": host},
        headers=mint("repository:team/app:pull"),
    )
    assert refused.status_code == 401
    assert 'scope="repository:up/team/app:pull"' in refused.headers["www-authenticate"]
    got = ours.get(
        f"/v2/team/app/manifests/{MANIFEST_DIGEST}",
        params={"ns": host},
        headers=mint("repository:up/team/app:pull"),
    )
    assert got.status_code == 200 and got.content == MANIFEST


@pytest.mark.parametrize("ttl", ["1s"])
def test_a_cached_tag_is_served_stale_with_a_warning_while_the_upstream_fails(
    ours: TestClient, upstream: FakeUpstream, mint: Mint, storage_root: Path
) -> None:
    headers = mint("repository:up/team/app:pull")
    upstream.answer = lambda seen: Answer(
        200, {"Content-Type": OCI, "Docker-Content-Digest": MANIFEST_DIGEST}, MANIFEST
    )
    fresh = ours.get("/v2/up/team/app/manifests/v1", headers=headers)
    assert fresh.status_code == 200 and "warning" not in fresh.headers
    time.sleep(1.2)
    for status in (500, 429, 401):
        upstream.answer = lambda seen, status=status: Answer(status, {}, b"")
        stale = ours.get("/v2/up/team/app/manifests/v1", headers=headers)
        assert stale.status_code == 200 and stale.content == MANIFEST, status
        assert stale.headers["warning"] == '110 - "Response is Stale"'
        assert stale.headers["docker-content-digest"] == MANIFEST_DIGEST
    # A tag the upstream says is gone is gone here too: not served stale.
    upstream.answer = lambda seen: Answer(404, {}, b"")
    gone = ours.get("/v2/up/team/app/manifests/v1", headers=headers)
    assert (gone.status_code, _error(gone)) == (404, "MANIFEST_UNKNOWN")


def test_a_blob_stored_for_one_repository_is_linked_for_another_once_the_upstream_has_it(
    ours: TestClient, upstream: FakeUpstream, mint: Mint
) -> None:
    upstream.answer = lambda seen: Answer(200, {}, BLOB)
    first = ours.get(
        f"/v2/up/team/one/blobs/{BLOB_DIGEST}", headers=mint("repository:up/team/one:pull")
    )
    assert first.status_code == 200 and first.content == BLOB
    upstream.seen.clear()
    second = ours.get(
        f"/v2/up/team/two/blobs/{BLOB_DIGEST}", headers=mint("repository:up/team/two:pull")
    )
    assert second.status_code == 200 and second.content == BLOB
    assert [(s.method, s.path) for s in upstream.seen] == [
        ("HEAD", f"/v2/team/two/blobs/{BLOB_DIGEST}")
    ]
    # A repository the upstream does not hold it in gets nothing of what another one holds.
    upstream.answer = lambda seen: Answer(404, {}, b"")
    third = ours.get(
        f"/v2/up/team/three/blobs/{BLOB_DIGEST}", headers=mint("repository:up/team/three:pull")
    )
    assert (third.status_code, _error(third)) == (404, "BLOB_UNKNOWN")

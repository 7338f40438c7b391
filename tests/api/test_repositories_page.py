"""The web page's repositories list against real processes: paged, bounded, never a 500.

One user's content must not break the admin's page or slow the server: an
index whose `layers` is a number, and one 4 MB manifest under fifty tags. A
registry that answers nonsense is a registry that answers nonsense, shown as such.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.peers import free_port
from tests.support.registry_proxy import RegistryProxy
from tests.support.tokenserver import TokenServer
from tokenserver.routes.ui.repositories import MAX_MANIFEST_BYTES, PAGE_SIZE

ROOT = ("root", "root-pw-1")
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EXTRA_REPOSITORIES = PAGE_SIZE + 5


@dataclass
class Stack:
    tokens: TokenServer
    registry: RegistryProxy
    big_digest: str


def _push(client: httpx.Client, tokens: TokenServer, repo: str, body: bytes, tags: str) -> str:
    token = httpx.get(
        f"{tokens.url}/token",
        params={"service": tokens.service, "scope": f"repository:{repo}:pull,push"},
        auth=ROOT,
    ).json()["token"]
    # A blob first: a repository is listed once it holds one (as in the Go registry).
    blob = b"{}"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    stored = client.post(
        f"/v2/{repo}/blobs/uploads/?digest={digest}",
        content=blob,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert stored.status_code == 201, stored.text
    media_type = json.loads(body)["mediaType"]
    answer = client.put(
        f"/v2/{repo}/manifests/{tags}",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": media_type},
    )
    assert answer.status_code == 201, answer.text
    return str(answer.headers["docker-content-digest"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, real_peer: None) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("repositories-page")
    port = free_port()
    tokens = TokenServer(
        work / "ts",
        extra={"ui": {"registry_url": f"http://127.0.0.1:{port}"}, "users": {"bcrypt_cost": 4}},
    )
    tokens.add_user(*ROOT, "admin")
    registry = RegistryProxy(work / "registry", tokens.registry_auth(), port=port)
    with tokens, registry, httpx.Client(base_url=registry.url, timeout=60) as client:
        # An index whose `layers` is a number: a registry takes it, the page must too.
        odd = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [], "layers": 5}
        _push(client, tokens, "root/odd", json.dumps(odd).encode(), "v1")
        # One 4 MB manifest under fifty tags.
        big = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [],
            "annotations": {"pad": "x" * 4_000_000},
        }
        tags = "v0?" + "&".join(f"tag=t{i:02d}" for i in range(1, 50))
        digest = _push(client, tokens, "root/big", json.dumps(big).encode(), tags)
        small = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        for i in range(EXTRA_REPOSITORIES):
            _push(client, tokens, f"root/r{i:02d}", json.dumps(small).encode(), "latest")
        yield Stack(tokens, registry, digest)


@contextlib.contextmanager
def signed_in(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=60) as client:
        form = client.get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        answer = client.post(
            "/ui/login", data={"username": ROOT[0], "password": ROOT[1], "csrf": csrf.group(1)}
        )
        assert answer.status_code == 303, answer.text
        yield client


def listed(html: str) -> list[str]:
    return re.findall(r"<h3>([^<]+)</h3>", html)


def test_the_page_lists_a_page_at_a_time_and_reads_no_large_manifest(stack: Stack) -> None:
    before = stack.registry.log_text()
    with signed_in(stack.tokens.url) as client:
        first = client.get("/ui/repositories")
        assert first.status_code == 200, first.text
        names = listed(first.text)
        assert names == sorted(names) and len(names) == PAGE_SIZE
        assert names[:2] == ["root/big", "root/odd"]
        assert 'id="error"' not in first.text
        # Fifty tags of one 4 MB manifest: all listed, by HEAD alone.
        big = first.text.split("<h3>root/big</h3>")[1].split("<h3>")[0]
        assert len(re.findall(r"<tr><td>(?:v0|t\d\d)</td>", big)) == 50
        assert big.count(stack.big_digest) == 50
        match = re.search(r'id="next-page" href="\?last=([^"]+)"', first.text)
        assert match is not None
        second = client.get(f"/ui/repositories?last={match.group(1)}")
        assert second.status_code == 200
        rest = listed(second.text)
        assert rest and rest[0] > names[-1]
        assert len(names) + len(rest) == EXTRA_REPOSITORIES + 2
        assert 'id="next-page"' not in second.text
    served = stack.registry.log_text()[len(before) :]
    reads = [
        json.loads(line)
        for line in served.splitlines()
        if line.startswith("{") and '"path": "/v2/root/big/manifests/' in line
    ]
    assert reads and {r["method"] for r in reads} == {"HEAD"}
    assert MAX_MANIFEST_BYTES < 4_000_000


def test_an_odd_index_shows_and_a_concurrent_token_request_is_answered(stack: Stack) -> None:
    with signed_in(stack.tokens.url) as client:
        results: dict[str, int] = {}

        def token() -> None:
            answer = httpx.get(
                f"{stack.tokens.url}/token", params={"service": "registry"}, auth=ROOT, timeout=30
            )
            results["token"] = answer.status_code

        thread = threading.Thread(target=token)
        thread.start()
        page = client.get("/ui/repositories")
        thread.join(timeout=60)
        assert results == {"token": 200}
        assert page.status_code == 200
        odd = page.text.split("<h3>root/odd</h3>")[1].split("<h3>")[0]
        assert "<td>v1</td>" in odd


@pytest.mark.parametrize("last", ["Not..A..Name", "x" * 300, "%C3%A9", "a/../b"])
def test_a_malformed_last_is_400(stack: Stack, last: str) -> None:
    with signed_in(stack.tokens.url) as client:
        answer = client.get(f"/ui/repositories?last={last}")
    assert answer.status_code == 400
    assert 'id="error"' in answer.text


class _Nonsense(http.server.BaseHTTPRequestHandler):
    """A registry that answers anything but a registry's answers."""

    def do_GET(self) -> None:
        if self.path.startswith("/v2/_catalog"):
            body = b'{"repositories": [' + b'"a",' * 2_000_000 + b'"b"]}'
        else:
            body = b"not json"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def nonsense(tmp_path: Path, real_peer: None) -> Iterator[TokenServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Nonsense)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    tokens = TokenServer(
        tmp_path / "ts",
        extra={
            "ui": {"registry_url": f"http://127.0.0.1:{server.server_address[1]}"},
            "users": {"bcrypt_cost": 4},
        },
    )
    tokens.add_user(*ROOT, "admin")
    try:
        with tokens:
            yield tokens
    finally:
        server.shutdown()
        server.server_close()


def test_a_registry_answering_nonsense_is_shown_as_such(nonsense: TokenServer) -> None:
    with signed_in(nonsense.url) as client:
        answer = client.get("/ui/repositories")
    assert answer.status_code == 200
    assert "could not be read" in answer.text
    assert "Traceback" not in nonsense.log_text()

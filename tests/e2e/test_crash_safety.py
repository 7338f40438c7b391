"""registry_proxy killed (SIGKILL) in the middle of a blob upload, then restarted on the same root.

The upload session survives: its status reports what was received, the
client resumes from there, and the committed blob has the right bytes and
digest. Before the commit the blob is never served, not even partially.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.registry_proxy import RegistryProxy
from tests.support.tokenserver import TokenServer

pytestmark = pytest.mark.e2e

ADMIN, ADMIN_PASSWORD = "root", "root-pw-crash"
MiB = 1024 * 1024
CHUNK = 2 * MiB
CHUNKS = 4
WAIT_SECONDS = 30


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    with TokenServer(tmp_path_factory.mktemp("crash-ts")) as server:
        server.add_user(ADMIN, ADMIN_PASSWORD, "admin")
        yield server


def admin_token(tokens: TokenServer, repo: str) -> str:
    """What a client gets from GET /token for pull,push on `repo` (Basic auth, admin user)."""
    answer = httpx.get(
        tokens.realm,
        params={"service": tokens.service, "scope": f"repository:{repo}:pull,push"},
        auth=(ADMIN, ADMIN_PASSWORD),
    )
    answer.raise_for_status()
    token: str = answer.json()["token"]
    return token


class Proxy:
    """registry_proxy over one storage root, restartable (same port, same root) after a kill."""

    def __init__(self, tokens: TokenServer, workdir: Path, token: str) -> None:
        self.tokens = tokens
        self.workdir = workdir
        self.root = workdir / "storage"
        self.port: int | None = None
        self.generation = 0
        self.server: RegistryProxy | None = None
        self.headers = {"Authorization": f"Bearer {token}"}
        self.start()

    def start(self) -> None:
        self.generation += 1
        self.server = RegistryProxy(
            self.workdir / f"proxy-{self.generation}",
            self.tokens.registry_auth(),
            root=self.root,
            port=self.port,
        ).start()
        self.port = self.server.port

    def kill(self) -> None:
        assert self.server is not None
        self.server.kill()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def client(self) -> httpx.Client:
        assert self.server is not None
        return httpx.Client(
            base_url=self.server.url, headers=self.headers, timeout=30, trust_env=False
        )

    def upload_data(self, repo: str, upload_id: str) -> Path:
        return (
            self.root / "docker/registry/v2/repositories" / repo / "_uploads" / upload_id / "data"
        )

    def blob_dir(self, digest: str) -> Path:
        hex_digest = digest.removeprefix("sha256:")
        return self.root / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest


@pytest.fixture
def make_proxy(tokens: TokenServer, tmp_path: Path) -> Iterator[Callable[[str], Proxy]]:
    """Starts a Proxy with a token for `repo`; every one is stopped at the end."""
    made: list[Proxy] = []

    def make(repo: str) -> Proxy:
        proxy = Proxy(tokens, tmp_path, admin_token(tokens, repo))
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.stop()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def assert_not_served(client: httpx.Client, repo: str, digest: str) -> None:
    """Neither HEAD nor GET of the blob finds it: 404 BLOB_UNKNOWN, no content."""
    head = client.head(f"/v2/{repo}/blobs/{digest}")
    assert head.status_code == 404, head.headers
    assert head.headers.get("docker-content-digest") is None
    got = client.get(f"/v2/{repo}/blobs/{digest}")
    assert got.status_code == 404, got.text[:200]
    assert got.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
    ranged = client.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": "bytes=0-0"})
    assert ranged.status_code == 404


def start_upload(client: httpx.Client, repo: str) -> str:
    started = client.post(f"/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202, started.text
    location: str = started.headers["location"]
    return location


def patch(client: httpx.Client, location: str, data: bytes, offset: int) -> httpx.Response:
    return client.patch(
        location,
        content=data,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + len(data) - 1}",
        },
    )


def status_offset(client: httpx.Client, location: str) -> int:
    """The size the upload session reports (GET on the session → 204, `Range: 0-<end>`)."""
    status = client.get(location)
    assert status.status_code == 204, status.text
    first, last = status.headers["range"].split("-")
    assert first == "0"
    return int(last) + 1


def finish(client: httpx.Client, repo: str, location: str, data: bytes, offset: int) -> None:
    """PATCH the rest from `offset`, PUT ?digest=, then read the blob back in full."""
    digest = digest_of(data)
    if offset < len(data):
        resumed = patch(client, location, data[offset:], offset)
        assert resumed.status_code == 202, resumed.text
        assert resumed.headers["range"] == f"0-{len(data) - 1}"
    assert_not_served(client, repo, digest)
    done = client.put(location, params={"digest": digest})
    assert done.status_code == 201, done.text
    assert done.headers["docker-content-digest"] == digest
    got = client.get(f"/v2/{repo}/blobs/{digest}")
    assert got.status_code == 200
    assert got.headers["docker-content-digest"] == digest
    assert int(got.headers["content-length"]) == len(data)
    assert got.content == data
    head = client.head(f"/v2/{repo}/blobs/{digest}")
    assert head.status_code == 200
    assert head.headers["docker-content-digest"] == digest
    assert int(head.headers["content-length"]) == len(data)


def test_killed_between_chunks_resumes_from_reported_offset(
    make_proxy: Callable[[str], Proxy],
) -> None:
    repo = "crash/between"
    proxy = make_proxy(repo)
    data = os.urandom(CHUNK * CHUNKS)
    digest = digest_of(data)

    with proxy.client() as client:
        location = start_upload(client, repo)
        for index in range(2):
            sent = patch(client, location, data[index * CHUNK : (index + 1) * CHUNK], index * CHUNK)
            assert sent.status_code == 202, sent.text
            assert sent.headers["range"] == f"0-{(index + 1) * CHUNK - 1}"
            assert_not_served(client, repo, digest)

    proxy.kill()
    proxy.start()

    with proxy.client() as client:
        assert_not_served(client, repo, digest)
        assert status_offset(client, location) == 2 * CHUNK
        # A chunk that does not start at the reported end is refused, and changes nothing.
        wrong = patch(client, location, data[3 * CHUNK :], 3 * CHUNK)
        assert wrong.status_code == 416, wrong.text
        assert status_offset(client, location) == 2 * CHUNK
        finish(client, repo, location, data, 2 * CHUNK)
    assert not proxy.upload_data(repo, location.rsplit("/", 1)[1]).parent.exists()


class BlockingBody:
    """A request body that sends `first` bytes, then blocks until released (or times out)."""

    def __init__(self, data: bytes, first: int) -> None:
        self.data = data
        self.first = first
        self.sent_first = threading.Event()
        self.release = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, self.first, 256 * 1024):
            yield self.data[start : min(start + 256 * 1024, self.first)]
        self.sent_first.set()
        self.release.wait(WAIT_SECONDS)
        # The server is gone by now; what follows is never received.
        yield self.data[self.first :]


def send_in_background(
    proxy: Proxy,
    method: str,
    url: str,
    body: BlockingBody,
    headers: dict[str, str],
    params: dict[str, str] | None = None,
) -> tuple[threading.Thread, list[object]]:
    """Send the request from a thread; its response or its `httpx.HTTPError` lands in the list."""
    outcome: list[object] = []

    def run() -> None:
        try:
            with proxy.client() as client:
                outcome.append(
                    client.request(method, url, content=body, headers=headers, params=params)
                )
        except httpx.HTTPError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def kill_mid_body(
    proxy: Proxy, body: BlockingBody, thread: threading.Thread, outcome: list[object]
) -> None:
    """SIGKILL the server while `body` is blocked; the client sees a transport error."""
    proxy.kill()
    body.release.set()
    thread.join(WAIT_SECONDS)
    assert not thread.is_alive()
    assert len(outcome) == 1, outcome
    assert isinstance(outcome[0], httpx.HTTPError), outcome


def wait_for_size(path: Path, at_least: int) -> int:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        size = path.stat().st_size if path.exists() else 0
        if size >= at_least:
            return size
        time.sleep(0.01)
    raise AssertionError(f"{path} never reached {at_least} bytes")


def test_killed_while_a_chunk_streams_keeps_a_consistent_prefix(
    make_proxy: Callable[[str], Proxy],
) -> None:
    repo = "crash/streaming"
    proxy = make_proxy(repo)
    data = os.urandom(CHUNK * CHUNKS)
    digest = digest_of(data)

    with proxy.client() as client:
        location = start_upload(client, repo)
        for index in range(2):
            sent = patch(client, location, data[index * CHUNK : (index + 1) * CHUNK], index * CHUNK)
            assert sent.status_code == 202, sent.text
    upload_id = location.rsplit("/", 1)[1]
    data_file = proxy.upload_data(repo, upload_id)

    # The third chunk (the rest of the blob, declared in full) stops after 1.5 MiB.
    offset = 2 * CHUNK
    body = BlockingBody(data[offset:], first=3 * MiB // 2)
    headers = {
        "Content-Type": "application/octet-stream",
        "Content-Length": str(len(data) - offset),
        "Content-Range": f"{offset}-{len(data) - 1}",
    }
    thread, outcome = send_in_background(proxy, "PATCH", location, body, headers)
    assert body.sent_first.wait(WAIT_SECONDS)
    # At least one 1 MiB batch of the streaming chunk reached the file.
    wait_for_size(data_file, offset + MiB)
    with proxy.client() as client:
        assert_not_served(client, repo, digest)
    kill_mid_body(proxy, body, thread, outcome)

    durable = data_file.stat().st_size
    assert offset + MiB <= durable <= offset + body.first
    # What is on disk is exactly the prefix that was sent, nothing else.
    with data_file.open("rb") as file:
        assert file.read() == data[:durable]
    assert not proxy.blob_dir(digest).exists()

    proxy.start()
    with proxy.client() as client:
        assert_not_served(client, repo, digest)
        assert status_offset(client, location) == durable
        finish(client, repo, location, data, durable)


def test_killed_during_a_monolithic_upload_serves_nothing(
    make_proxy: Callable[[str], Proxy],
) -> None:
    repo = "crash/monolithic"
    proxy = make_proxy(repo)
    data = os.urandom(CHUNK * CHUNKS)
    digest = digest_of(data)
    uploads = proxy.root / "docker/registry/v2/repositories" / repo / "_uploads"

    # POST ?digest= with the whole blob, stopped after 5 of its 8 MiB.
    body = BlockingBody(data, first=5 * MiB)
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))}
    url = f"/v2/{repo}/blobs/uploads/"
    thread, outcome = send_in_background(proxy, "POST", url, body, headers, {"digest": digest})
    assert body.sent_first.wait(WAIT_SECONDS)
    deadline = time.monotonic() + WAIT_SECONDS
    while not list(uploads.glob("*/data")) and time.monotonic() < deadline:
        time.sleep(0.01)
    (data_file,) = uploads.glob("*/data")
    wait_for_size(data_file, 4 * MiB)
    with proxy.client() as client:
        assert_not_served(client, repo, digest)
    kill_mid_body(proxy, body, thread, outcome)
    assert not proxy.blob_dir(digest).exists()

    proxy.start()
    with proxy.client() as client:
        assert_not_served(client, repo, digest)
        # The client retries from scratch, as clients do for a monolithic upload.
        retried = client.post(url, params={"digest": digest}, content=data)
        assert retried.status_code == 201, retried.text
        got = client.get(f"/v2/{repo}/blobs/{digest}")
        assert got.status_code == 200
        assert got.headers["docker-content-digest"] == digest
        assert got.content == data

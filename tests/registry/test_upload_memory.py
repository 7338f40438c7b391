"""Slow uploads against a real registry process: bounded in number and memory, memory given back.

The attack review's load: PATCHes announcing 100 MiB that send 1 MiB and
then trickle. An upload in progress holds at most about 3 MiB, the process
takes at most `http.max_uploads` of them at once (and one subject at most
`http.max_uploads_per_subject`), refusing the rest with 429 before reading
their bodies, and a trickling upload holds next to nothing.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support.minter import Minter, log_problems
from tests.support.registry_proxy import RegistryProxy
from tests.support.tokenserver import resident_bytes

MB = 1024 * 1024
REPO = "team/app"
MAX_UPLOADS = 100
PER_SUBJECT = 30
# What one upload in progress may hold (gathered by the HTTP layer, and batches queued).
PER_UPLOAD = 3 * MB
SLACK = 64 * MB


@dataclass
class Running:
    registry: RegistryProxy
    minter: Minter

    def start_session(self, subject: str) -> str:
        headers = self.minter.headers(f"repository:{REPO}:pull,push", subject=subject)
        with httpx.Client(base_url=self.registry.url, trust_env=False) as client:
            answer = client.post(f"/v2/{REPO}/blobs/uploads/", headers=headers)
        assert answer.status_code == 202, answer.text
        return str(answer.headers["location"])

    def open_patch(self, subject: str, first: bytes) -> socket.socket:
        """A PATCH announcing 100 MiB; its head and `first` are sent, the rest never."""
        location = self.start_session(subject)
        token = self.minter.headers(f"repository:{REPO}:pull,push", subject=subject)
        head = (
            f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: {token['Authorization']}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {100 * MB}\r\n\r\n"
        ).encode()
        sock = socket.create_connection(("127.0.0.1", self.registry.port), timeout=30)
        with contextlib.suppress(OSError):  # refused and closed meanwhile: read below
            sock.sendall(head + first)
        return sock

    @property
    def rss(self) -> int:
        return resident_bytes(self.registry.pid)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, real_peer: None) -> Iterator[Running]:
    work = tmp_path_factory.mktemp("upload-memory")
    minter = Minter(work / "keys")
    registry = RegistryProxy(
        work / "proxy",
        minter.token_auth,
        extra={
            "http": {"max_uploads": MAX_UPLOADS, "max_uploads_per_subject": PER_SUBJECT},
            "storage": {"maintenance": {"uploadpurging": {"enabled": False}}},
        },
    )
    with registry:
        yield Running(registry, minter)
    problems = log_problems(registry.log_text())
    assert not problems, "\n".join(problems[:5])


def answered(socks: list[socket.socket], wait: float) -> dict[socket.socket, bytes]:
    """The sockets that got an answer within `wait` seconds, with its first bytes."""
    found: dict[socket.socket, bytes] = {}
    deadline = time.monotonic() + wait
    pending = list(socks)
    while pending and (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select(pending, [], [], min(left, 0.5))
        for sock in readable:
            try:
                found[sock] = sock.recv(4096)
            except OSError:
                found[sock] = b""
            pending.remove(sock)
    return found


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


def test_a_thousand_trickling_uploads_stay_bounded_and_give_memory_back(
    running: Running,
) -> None:
    before = running.rss
    chunk = b"x" * MB
    # Thirty-four subjects, so the overall cap is what binds.
    socks = [running.open_patch(f"user{i % 34}", chunk) for i in range(1000)]
    try:
        peak = running.rss
        refused = answered(socks, wait=5)
        accepted = [s for s in socks if s not in refused]
        assert len(accepted) == MAX_UPLOADS
        assert all(answer.startswith(b"HTTP/1.1 429") for answer in refused.values())
        assert all(b"retry-after: 5" in answer.lower() for answer in refused.values())
        # The accepted ones trickle: a byte each, a few times.
        for _ in range(3):
            for sock in accepted:
                sock.send(b"y")
            time.sleep(1)
            peak = max(peak, running.rss)
        trickling = running.rss
    finally:
        close_all(socks)
    assert peak - before < MAX_UPLOADS * PER_UPLOAD + SLACK, (before, peak)
    # Written to storage, a trickling upload holds next to nothing (each held 1 MiB).
    assert trickling - before < SLACK, (before, trickling)
    deadline = time.monotonic() + 20
    while running.rss - before > SLACK / 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert running.rss - before <= SLACK / 2, (before, running.rss)
    # The slots came back with the connections: new uploads are taken again.
    again = [running.open_patch("after", b"z") for _ in range(3)]
    try:
        assert answered(again, wait=2) == {}
    finally:
        close_all(again)


def test_one_subject_gets_its_share_and_no_more(running: Running) -> None:
    mine = [running.open_patch("greedy", b"a" * 1000) for _ in range(PER_SUBJECT + 5)]
    try:
        refused = answered(mine, wait=3)
        assert len(refused) == 5
        [answer] = {a.split(b"\r\n", 1)[0] for a in refused.values()}
        assert answer.startswith(b"HTTP/1.1 429")
        body = b"".join(refused.values())
        assert b"TOOMANYREQUESTS" in body
        # Another subject is still served meanwhile.
        other = [running.open_patch("modest", b"b" * 1000)]
        try:
            assert answered(other, wait=1) == {}
        finally:
            close_all(other)
    finally:
        close_all(mine)


def test_manifests_take_a_slot_too(running: Running) -> None:
    token = running.minter.headers(f"repository:{REPO}:pull,push", subject="manifests")
    socks = []
    for _ in range(PER_SUBJECT + 2):
        sock = socket.create_connection(("127.0.0.1", running.registry.port), timeout=30)
        sock.sendall(
            (
                f"PUT /v2/{REPO}/manifests/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: {token['Authorization']}\r\n"
                "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"
                "Content-Length: 4000000\r\n\r\n{"
            ).encode()
        )
        socks.append(sock)
    try:
        refused = answered(socks, wait=3)
        assert len(refused) == 2
        assert all(a.startswith(b"HTTP/1.1 429") for a in refused.values())
    finally:
        close_all(socks)


def test_an_error_that_leaves_a_large_body_unread_closes_the_connection(running: Running) -> None:
    # Else the server would read and drop the announced 100 MiB for as long as they trickle.
    token = running.minter.headers(f"repository:{REPO}:pull,push", subject="closer")
    sock = socket.create_connection(("127.0.0.1", running.registry.port), timeout=10)
    try:
        sock.sendall(
            (
                f"PATCH /v2/{REPO}/blobs/uploads/0b9a2d6e-6c58-4b5b-9a0e-4bd0a3b9f4a1 HTTP/1.1\r\n"
                f"Host: 127.0.0.1\r\nAuthorization: {token['Authorization']}\r\n"
                f"Content-Length: {100 * MB}\r\n\r\n"
            ).encode()
            + b"x" * 100_000
        )
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    finally:
        sock.close()
    head = received.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 404") and b"connection: close" in head

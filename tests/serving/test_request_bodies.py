"""Request bodies, gathered as parts (no copies) with room for 1 MiB once the app reads, reach
the registry byte for byte however they arrive: in one large write, in many small segments, and
faster than the app takes them (parts gathered between two reads); an altered body is refused
and nothing is stored."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from authcore.http_server import _BodyParts
from tests.serving.conftest import Served
from tests.serving.raw import connect, read_answer, request_head

PUSH = "repository:team/bodies:pull,push"


def test_parts_are_kept_as_they_came_and_joined_only_when_there_are_several() -> None:
    parts = _BodyParts()
    assert len(parts) == 0 and bytes(parts) == b""
    first = os.urandom(1000)
    same = parts
    parts += first
    assert parts is same and len(parts) == 1000
    assert bytes(parts) is first  # one part: handed over as is, not copied
    second = b"\x00\xff" * 7
    parts += second
    assert len(parts) == 1014 and bytes(parts) == first + second


def _sends(data: bytes, piece: int) -> Iterator[bytes]:
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


def _put_blob(
    registry: Served, auth: dict[str, str], data: bytes, write: Callable[[socket.socket], None]
) -> int:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    started = httpx.post(f"{registry.url}/v2/team/bodies/blobs/uploads/", headers=auth)
    assert started.status_code == 202, started.text
    location = started.headers["location"]
    path = f"{location}{'&' if '?' in location else '?'}digest={digest}"
    headers = [*auth.items(), ("Content-Length", str(len(data)))]
    with connect(registry.port, timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request_head("PUT", path, headers))
        write(sock)
        answer = read_answer(sock)
    if answer.status == 201:
        fetched = httpx.get(f"{registry.url}/v2/team/bodies/blobs/{digest}", headers=auth)
        assert fetched.status_code == 200 and fetched.content == data
    return answer.status


@pytest.mark.parametrize(
    ("size", "piece", "pause"),
    [
        (3 * 1024 * 1024 + 7, 4 * 1024 * 1024, 0.0),  # one write
        (200_003, 997, 0.0005),  # many small segments, each read on its own
        (8 * 1024 * 1024 + 1, 61_441, 0.0),  # faster than the app reads: parts pile up
    ],
)
def test_an_upload_body_arrives_whole(
    registry: Served,
    bearer: Callable[..., dict[str, str]],
    size: int,
    piece: int,
    pause: float,
) -> None:
    data = os.urandom(size)

    def write(sock: socket.socket) -> None:
        for chunk in _sends(data, piece):
            sock.sendall(chunk)
            if pause:
                time.sleep(pause)

    assert _put_blob(registry, bearer(PUSH), data, write) == 201


def test_a_body_altered_on_the_way_is_refused_and_not_stored(
    registry: Served, bearer: Callable[..., dict[str, str]]
) -> None:
    data = os.urandom(2 * 1024 * 1024)
    altered = bytearray(data)
    altered[1_500_000] ^= 1

    def write(sock: socket.socket) -> None:
        for chunk in _sends(bytes(altered), 65_536):
            sock.sendall(chunk)

    auth = bearer(PUSH)
    assert _put_blob(registry, auth, data, write) == 400
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert (
        httpx.head(f"{registry.url}/v2/team/bodies/blobs/{digest}", headers=auth).status_code == 404
    )

"""The same limits hold over TLS, where the transport cannot half-close."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving.conftest import ISSUER, QUICK, SERVICE
from tests.serving.raw import LOOPBACK, answer_or_reset, read_answer, request_head, wait_closed
from tests.support.certs import write_self_signed
from tests.support.registry_proxy import RegistryProxy


@pytest.fixture(scope="module")
def tls_registry(
    tmp_path_factory: pytest.TempPathFactory, serving_keys: Path, real_peer: None
) -> Iterator[tuple[int, ssl.SSLContext]]:
    workdir = tmp_path_factory.mktemp("tls")
    cert, key = write_self_signed(workdir)
    auth = {
        "realm": "http://127.0.0.1:1/token",
        "service": SERVICE,
        "issuer": ISSUER,
        "rootcertbundle": str(serving_keys / "bundle.pem"),
    }
    with RegistryProxy(workdir, auth, tls=(cert, key), extra={"http": dict(QUICK)}) as registry:
        yield registry.port, ssl.create_default_context(cafile=str(cert))


def _connect(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    sock = context.wrap_socket(socket.create_connection((LOOPBACK, port)), server_hostname=LOOPBACK)
    sock.settimeout(10)
    return sock


def test_head_size(tls_registry: tuple[int, ssl.SSLContext]) -> None:
    port, context = tls_registry
    with _connect(port, context) as sock:
        sock.sendall(request_head("GET", "/v2/", [("Connection", "close")], size=64 * 1024))
        assert read_answer(sock).status == 401
    with _connect(port, context) as sock:
        sock.sendall(request_head("GET", "/v2/", size=64 * 1024 + 1))
        answer = answer_or_reset(sock)
        assert answer is not None and answer.status == 431


def test_a_silent_connection_after_the_handshake(tls_registry: tuple[int, ssl.SSLContext]) -> None:
    port, context = tls_registry
    with _connect(port, context) as sock:
        assert 0.9 <= wait_closed(sock, 2.5) <= 2.5

"""`make run` (scripts/devstack.py) as a new user meets it: ports taken, a server dying."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.peers import free_port

ROOT = Path(__file__).resolve().parents[2]
DEVSTACK = ROOT / "scripts" / "devstack.py"


def _env(tmp_path: Path, token_port: int, registry_port: int) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TOKENSERVER_", "REGISTRY_PROXY_", "REGISTRY_"))
    }
    env.update(
        DEV_DIR=str(tmp_path / "dev"),
        KEYS_DIR=str(tmp_path / "keys"),
        TOKEN_ADDR=f"127.0.0.1:{token_port}",
        REGISTRY_ADDR=f"127.0.0.1:{registry_port}",
    )
    return env


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port something else is listening on, as an earlier `make run` would be."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("taken", ["TOKEN_ADDR", "REGISTRY_ADDR"])
def test_a_taken_port_is_named_and_fails(tmp_path: Path, held_port: int, taken: str) -> None:
    ports = {"TOKEN_ADDR": free_port(), "REGISTRY_ADDR": free_port(), taken: held_port}
    result = subprocess.run(
        [sys.executable, str(DEVSTACK)],
        env=_env(tmp_path, ports["TOKEN_ADDR"], ports["REGISTRY_ADDR"]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"127.0.0.1:{held_port} is in use" in result.stderr
    assert taken in result.stderr
    assert "token server:" not in result.stdout  # no banner claiming success
    assert not (tmp_path / "dev").exists()  # nothing was set up either


def _children(marker: str) -> dict[str, int]:
    """pid of each server whose command line names `marker` (our temp dir)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = b" ".join(argv).decode(errors="replace")
        if marker in text and " serve " in text:
            found["tokenserver" if "tokenserver" in text else "registry"] = int(proc.name)
    return found


def test_a_server_dying_stops_the_other_and_fails(tmp_path: Path) -> None:
    token_port, registry_port = free_port(), free_port()
    stack = subprocess.Popen(
        [sys.executable, str(DEVSTACK)],
        env=_env(tmp_path, token_port, registry_port),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    banner = []
    try:
        assert stack.stdout is not None
        for line in stack.stdout:  # until both are up (the banner's last line)
            banner.append(line)
            if line.startswith("Ctrl-C stops everything"):
                break
        children = _children(str(tmp_path))
        assert set(children) == {"tokenserver", "registry"}
        os.kill(children["tokenserver"], signal.SIGKILL)
        out, err = stack.communicate(timeout=60)
    finally:
        if stack.poll() is None:
            stack.kill()
    out = "".join(banner) + out
    assert stack.returncode != 0
    assert "tokenserver exited with status -9" in err
    assert "export TOKENSERVER_CONFIG=" in out and "export PATH=" in out
    # The registry was stopped too.
    assert "registry" not in _children(str(tmp_path))
    # Readiness was probed without a request: nothing in the logs claims a failure.
    assert "request failed" not in err and '"status": 401' not in err

"""`make run` (scripts/devstack.py) as a new user meets it: ports taken, a server dying, Ctrl-C.

Ctrl-C is tried both as a signal to the script's process group and as a
user at a terminal sends it: an interactive bash on a pseudo-terminal runs
`make run`, suspends it with Ctrl-Z, resumes it with `fg`, and stops it.
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.peers import free_port

# Each test starts both servers as processes.
pytestmark = pytest.mark.peers

ROOT = Path(__file__).resolve().parents[2]
DEVSTACK = ROOT / "scripts" / "devstack.py"
BASH = "/bin/bash"
# What an outer `make test` leaves in the environment for its sub-makes.
MAKE_VARS = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")


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


def _port_closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def _banner(stack: subprocess.Popen[str]) -> str:
    """stdout up to the banner's last line: both servers are up."""
    assert stack.stdout is not None
    lines = []
    for line in stack.stdout:
        lines.append(line)
        if line.startswith("Ctrl-C stops everything"):
            return "".join(lines)
    raise AssertionError("no banner: " + "".join(lines))


# Starts devstack.py with SIGINT ignored, as a script's `make run &` starts it
# (the servers, which handle SIGINT themselves, still stop on it).
SIGINT_IGNORED = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


@pytest.mark.parametrize("sigint", ["handled", "ignored"])
def test_sigint_to_its_process_group_stops_both_and_exits_0(tmp_path: Path, sigint: str) -> None:
    token_port, registry_port = free_port(), free_port()
    python = [sys.executable, "-c", SIGINT_IGNORED] if sigint == "ignored" else [sys.executable]
    stack = subprocess.Popen(
        [*python, str(DEVSTACK)],
        env=_env(tmp_path, token_port, registry_port),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a group of its own, as a terminal's foreground job
    )
    try:
        _banner(stack)
        assert set(_children(str(tmp_path))) == {"tokenserver", "registry"}
        os.killpg(stack.pid, signal.SIGINT)  # what Ctrl-C sends: to every process of the group
        _out, err = stack.communicate(timeout=60)
    finally:
        if stack.poll() is None:
            stack.kill()
    assert stack.returncode == 0, err
    assert "exited with status" not in err and "Traceback" not in err
    assert _children(str(tmp_path)) == {}
    assert _port_closed(token_port) and _port_closed(registry_port)


class Terminal:
    """An interactive bash on a pseudo-terminal: what a user types, and what they see."""

    PROMPT = "PROMPT: "

    def __init__(self, env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: exec at once
            os.chdir(ROOT)
            # No shell in between: this bash is the shell, its terminal the pty.
            os.execve(BASH, [BASH, "--norc", "--noprofile", "--noediting", "-i"], env)  # noqa: S606
        self.seen = ""  # everything so far
        self._unread = ""
        self.wait_for(self.PROMPT)

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait_for(self, pattern: str, timeout: float = 90) -> re.Match[str]:
        """The first match of `pattern` (a regular expression) in what is not yet read."""
        deadline = time.monotonic() + timeout
        while (found := re.search(pattern, self._unread, re.MULTILINE)) is None:
            assert time.monotonic() < deadline, f"no {pattern!r} in {self._unread[-3000:]!r}"
            ready, _, _ = select.select([self.fd], [], [], 0.5)
            if ready:
                chunk = os.read(self.fd, 65536).decode(errors="replace")
                self.seen += chunk
                self._unread += chunk
        self._unread = self._unread[found.end() :]
        return found

    def foreground(self) -> int:
        """The process group the terminal sends Ctrl-C and Ctrl-Z to."""
        return os.tcgetpgrp(self.fd)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.fd)


def _until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.1)


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_ctrl_c_at_a_terminal_ends_make_run_with_status_0(tmp_path: Path) -> None:
    token_port, registry_port = free_port(), free_port()
    env = {k: v for k, v in _env(tmp_path, token_port, registry_port).items() if k not in MAKE_VARS}
    env.update(PS1=Terminal.PROMPT, TERM="dumb", HISTFILE="")
    terminal = Terminal(env)
    try:
        # The stamp is taken as done: the test runs the interpreter running it.
        terminal.type(f"make -o .venv/.installed run PY={sys.executable}\n")
        terminal.wait_for(r"^Ctrl-C stops everything\.")
        servers = _children(str(tmp_path))
        assert set(servers) == {"tokenserver", "registry"}
        group = os.getpgid(servers["tokenserver"])
        assert os.getpgid(servers["registry"]) == group
        assert terminal.foreground() == group  # not make's: Ctrl-C is not make's to act on

        # Ctrl-Z suspends the job: the servers stop and the shell has the terminal again.
        terminal.type("\x1a")
        terminal.wait_for(r"Stopped")
        terminal.wait_for(Terminal.PROMPT)
        _until(lambda: all(_state(pid) == "T" for pid in servers.values()))
        assert terminal.foreground() == terminal.pid
        terminal.type("fg\n")
        _until(lambda: terminal.foreground() == group)
        _until(lambda: all(_state(pid) != "T" for pid in servers.values()))
        assert not _port_closed(token_port) and not _port_closed(registry_port)

        terminal.type("\x03")
        terminal.wait_for(Terminal.PROMPT, timeout=60)
        terminal.type('echo "status=$?"\n')
        status = terminal.wait_for(r"^status=(\d+)").group(1)
    finally:
        terminal.close()
        for pid in _children(str(tmp_path)).values():
            os.kill(pid, signal.SIGKILL)
    assert status == "0", terminal.seen[-3000:]
    assert "exited with status" not in terminal.seen and "make: ***" not in terminal.seen
    assert "Traceback" not in terminal.seen
    assert _children(str(tmp_path)) == {}
    assert _port_closed(token_port) and _port_closed(registry_port)

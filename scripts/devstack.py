"""`make run`: the token server and the registry service on loopback with embedded defaults.

State lives in var/dev (SQLite database, registry storage, generated configs);
signing keys in keys/. The first start creates an `admin` user with a random
password and prints it once. Both ports must be free (another `make run`
still running is the usual reason they are not); if either server dies, the
other is stopped and the exit status says so. Ctrl-C (or SIGTERM) stops both
and exits 0.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import yaml
from terminal import Terminal  # beside this script, so on sys.path

ROOT = Path(__file__).resolve().parent.parent
# Overridable so the tests of `make run` itself never touch a developer's state.
VAR = Path(os.environ.get("DEV_DIR", ROOT / "var" / "dev"))
KEYS = Path(os.environ.get("KEYS_DIR", ROOT / "keys"))
TOKEN_ADDR = os.environ.get("TOKEN_ADDR", "127.0.0.1:5001")
REGISTRY_ADDR = os.environ.get("REGISTRY_ADDR", "127.0.0.1:5000")
SERVICE = "registry"
ISSUER = "tokenserver"
# Seconds a server may take to stop once told (its own drain timeouts are shorter).
STOP_TIMEOUT = 20
POLL_INTERVAL = 0.2


class Stop(Exception):
    """Ctrl-C or SIGTERM: stop the servers and exit 0."""


def _stop_requested(signum: int, _frame: FrameType | None) -> None:
    # Once: a second Ctrl-C while the servers stop must not cut the stopping short.
    _ignore_stop_signals()
    raise Stop


def _ignore_stop_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def tokenserver(*args: str, input: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "tokenserver", *args, "--config", str(VAR / "tokenserver.yaml")],
        input=input,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(result.stderr.strip())
    return result.stdout


def write_configs() -> None:
    VAR.mkdir(parents=True, exist_ok=True)
    config = {
        "server": {"addr": TOKEN_ADDR},
        "token": {"issuer": ISSUER, "service": SERVICE, "keys_dir": str(KEYS)},
        "database": {"url": f"sqlite:///{VAR / 'tokenserver.db'}"},
        "ui": {"registry_url": f"http://{REGISTRY_ADDR}"},
    }
    (VAR / "tokenserver.yaml").write_text(yaml.safe_dump(config))
    registry = {
        "log": {"level": "info"},
        "http": {"addr": REGISTRY_ADDR},
        "storage": {
            "filesystem": {"rootdirectory": str(VAR / "registry")},
            "delete": {"enabled": True},
        },
        "auth": {
            "token": {
                "realm": f"http://{TOKEN_ADDR}/token",
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(KEYS / "bundle.pem"),
            }
        },
    }
    (VAR / "registry.yaml").write_text(yaml.safe_dump(registry))


def ensure_admin() -> str | None:
    users = yaml.safe_load(tokenserver("user", "list", "--json"))
    if any(u["name"] == "admin" for u in users):
        return None
    password = secrets.token_urlsafe(18)
    tokenserver("user", "add", "admin", "--password-stdin", "--group", "admin", input=password)
    return password


def _split(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def require_free(addr: str, variable: str) -> None:
    """Refuse to start on a port something else holds: its answers would look like ours."""
    host, port = _split(addr)
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            sys.exit(
                f"make run: {addr} is in use (is another `make run` still running?). "
                f"Stop it, or choose another port: {variable}=127.0.0.1:PORT make run"
            )


def wait_for(addr: str, proc: subprocess.Popen[bytes], name: str) -> None:
    """Until the child listens: a plain connect, so no request shows in its log."""
    host, port = _split(addr)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"make run: {name} exited during start-up (status {proc.returncode})")
        try:
            socket.create_connection((host, port), timeout=1).close()
        except OSError:
            time.sleep(0.1)
            continue
        if proc.poll() is None:  # the port was free before: the listener is this child
            return
    sys.exit(f"make run: {name} did not start within 30 s")


def stop_all(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
            # A server stopped by Ctrl-Z acts on SIGTERM only once continued.
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
    for proc in procs.values():
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    require_free(TOKEN_ADDR, "TOKEN_ADDR")
    require_free(REGISTRY_ADDR, "REGISTRY_ADDR")
    # Handled rather than left to KeyboardInterrupt: a background `make run &`
    # starts with SIGINT ignored, and the servers stop on it all the same.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop_requested)
    terminal: Terminal | None = None
    procs: dict[str, subprocess.Popen[bytes]] = {}
    died: tuple[str, int] | None = None
    try:
        terminal = Terminal.claim()
        died = run(procs, terminal)
    except Stop:
        pass
    finally:
        _ignore_stop_signals()
        stop_all(procs)
        if terminal is not None:
            terminal.release()
    # A server ended by a stop signal was stopped, as Ctrl-C or `kill` stops
    # this script; any other end is a failure.
    if died is not None and died[1] not in (0, -signal.SIGINT, -signal.SIGTERM):
        print(
            f"make run: {died[0]} exited with status {died[1]}; stopped the rest", file=sys.stderr
        )
        return 1
    return 0


def run(procs: dict[str, subprocess.Popen[bytes]], terminal: Terminal | None) -> tuple[str, int]:
    """Start both servers into `procs`; once one of them ends, its name and exit status."""
    write_configs()
    if not any(KEYS.glob("*.key")):
        print(f"generated signing key {tokenserver('keys', 'generate').strip()}")
    password = ensure_admin()

    procs["tokenserver"] = subprocess.Popen(
        [sys.executable, "-m", "tokenserver", "serve", "--config", str(VAR / "tokenserver.yaml")]
    )
    wait_for(TOKEN_ADDR, procs["tokenserver"], "tokenserver")
    procs["registry-proxy"] = subprocess.Popen(
        [sys.executable, "-m", "registry_proxy", "serve", "--config", str(VAR / "registry.yaml")]
    )
    wait_for(REGISTRY_ADDR, procs["registry-proxy"], "registry-proxy")

    bin_dir = Path(sys.executable).parent
    print()
    print(f"token server:  http://{TOKEN_ADDR}/token  (JWKS at /.well-known/jwks.json)")
    print(f"registry:      http://{REGISTRY_ADDR}/v2/  (token auth, service {SERVICE!r})")
    print(f"admin page:    http://{TOKEN_ADDR}/ui/  (members of the admin group)")
    print()
    print("In another shell, for the tokenserver and registry-proxy commands:")
    print(f'  export PATH="{bin_dir}:$PATH"')
    print(
        f'  export TOKENSERVER_CONFIG="{VAR / "tokenserver.yaml"}"'
        f' REGISTRY_PROXY_CONFIG="{VAR / "registry.yaml"}"'
    )
    if password:
        print()
        print("Created user 'admin' (group admin). Its password is shown only this once:")
        print(f"  docker login {REGISTRY_ADDR} -u admin -p '{password}'")
    else:
        print(f"Log in with:   docker login {REGISTRY_ADDR} -u admin")
    print("Ctrl-C stops everything.", flush=True)

    while True:
        for name, proc in procs.items():
            if proc.poll() is not None:
                return name, proc.returncode
        if terminal is not None:
            terminal.follow()
        time.sleep(POLL_INTERVAL)


if __name__ == "__main__":
    sys.exit(main())

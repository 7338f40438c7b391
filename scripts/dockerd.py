"""`make dockerd`: a private Docker engine to try the registry with, started as the tests start one.

Its data root, containerd and socket live in a fresh directory under /tmp,
removed when it stops; it changes no iptables rule or bridge, and may talk
plain HTTP to registries on 127.0.0.0/8. It runs until Ctrl-C; meanwhile the
`export DOCKER_HOST=...` line it prints points `docker` at it. Needs root,
and docker.io (`make peers`).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.support: the one place the engine's flags are kept

from terminal import Terminal  # noqa: E402 - beside this script, so on sys.path

from tests.support.peers import CTR, DOCKER_CLI, DOCKERD, Dockerd, PeerStartError  # noqa: E402

POLL_INTERVAL = 0.2


class Stop(Exception):
    """Ctrl-C or SIGTERM: stop the engine and exit 0."""


def _stop_requested(_signum: int, _frame: FrameType | None) -> None:
    _ignore_stop_signals()  # once: a second Ctrl-C must not cut the stopping short
    raise Stop


def _ignore_stop_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def main() -> int:
    missing = [path for path in (DOCKERD, DOCKER_CLI, CTR) if not os.access(path, os.X_OK)]
    if missing:
        sys.exit(f"make dockerd: {', '.join(missing)} missing: install them with `make peers`")
    if os.geteuid() != 0:
        sys.exit("make dockerd: dockerd runs as root (rootless Docker is not set up here)")
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop_requested)
    terminal: Terminal | None = None
    engine: Dockerd | None = None
    try:
        terminal = Terminal.claim()
        engine = Dockerd()
        engine.start()
        print(f"Docker engine ready (its log: {engine.log_path}). In another shell:")
        print(f"  export DOCKER_HOST={engine.host}")
        print("Ctrl-C stops it and removes its directory.", flush=True)
        assert engine.proc is not None
        while engine.proc.poll() is None:
            if terminal is not None:
                terminal.follow()
            time.sleep(POLL_INTERVAL)
        print(f"make dockerd: dockerd exited with status {engine.proc.returncode}", file=sys.stderr)
        return 1
    except Stop:
        return 0
    except PeerStartError as exc:
        print(f"make dockerd: {exc}", file=sys.stderr)
        return 1
    finally:
        _ignore_stop_signals()
        if engine is not None:
            engine.stop()
        if terminal is not None:
            terminal.release()


if __name__ == "__main__":
    sys.exit(main())

"""`make dockerd` (scripts/dockerd.py): the private engine the README's docker lines use.

It prints the DOCKER_HOST to export, docker answers there, and Ctrl-C stops
the engine and removes its directory.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.peers import (
    DOCKER_CLI,
    DOCKER_CLIENT_ENV,
    env_without,
    pid_alive,
    printed_until,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_it_prints_the_docker_host_and_ctrl_c_stops_it() -> None:
    engine = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "dockerd.py")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a group of its own, as a terminal's foreground job
    )
    try:
        printed = printed_until(engine, "Ctrl-C stops it")
        export = re.search(
            r"^  export DOCKER_HOST=(unix://(/tmp/\S+)/docker\.sock)$", printed, re.M
        )
        assert export is not None, printed
        host, workdir = export.group(1), Path(export.group(2))
        dockerd_pid = int((workdir / "pid").read_text())
        # Exactly as the README has it: the variable, and nothing else of Docker's.
        env = env_without(names=DOCKER_CLIENT_ENV) | {"DOCKER_HOST": host}
        version = subprocess.run(
            [DOCKER_CLI, "version", "--format", "{{.Server.Version}}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert version.returncode == 0 and version.stdout.strip(), version.stderr
        os.killpg(engine.pid, signal.SIGINT)
        _out, err = engine.communicate(timeout=90)
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()
    assert engine.returncode == 0, err
    assert "Traceback" not in err
    assert not pid_alive(dockerd_pid)
    assert not workdir.exists()

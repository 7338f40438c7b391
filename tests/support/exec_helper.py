"""A docker credential helper for tests: a python3 script that does what its behaviour file says.

`HelperScript(directory)` writes the script (executable) and its behaviour
(`behave(...)`, changeable between runs); each run is recorded in
`runs.jsonl` (its arguments, what came on stdin, its environment's names)
before it answers. Modes: `ok` answers the protocol's JSON; `fail` prints
the secret on stderr and exits 1; `garbage`, `list`, `deep`, `no-secret`
answer what no helper should; `flood` writes 100 MB; `hang` starts a
`sleep` that holds its output and sleeps itself.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import sys
from pathlib import Path
from typing import Any

__all__ = ["HelperScript"]

_SCRIPT = """\
#!{python}
import json, os, subprocess, sys, time

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "behaviour.json")) as f:
    b = json.load(f)
server = sys.stdin.read()
with open(os.path.join(here, "runs.jsonl"), "a+") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "server": server, "env": sorted(os.environ)}}) + "\\n")
    f.seek(0)
    first = len(f.read().splitlines()) == 1
time.sleep(b["delay"])
mode = b["mode"]
secret = b["secret"] if first or b["then"] is None else b["then"]
answer = {{"ServerURL": server, "Username": b["username"], "Secret": secret}}
if mode == "ok":
    print(json.dumps(answer))
elif mode == "fail":
    sys.stderr.write("vault refused the token " + b["secret"] + "\\n")
    sys.exit(1)
elif mode == "garbage":
    sys.stdout.write("{{not json " + b["secret"])
elif mode == "list":
    print(json.dumps([answer]))
elif mode == "deep":
    sys.stdout.write("[" * 60000)
elif mode == "no-secret":
    print(json.dumps({{"ServerURL": server, "Username": b["username"]}}))
elif mode == "flood":
    chunk = b"x" * (1 << 20)
    for _ in range(100):
        sys.stdout.buffer.write(chunk)
elif mode == "hang":
    child = subprocess.Popen(["sleep", "60"])
    with open(os.path.join(here, "child.pid"), "w") as f:
        f.write(str(child.pid))
    time.sleep(60)
"""


class HelperScript:
    def __init__(self, directory: Path, name: str = "docker-credential-test") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / name
        self.path.write_text(_SCRIPT.format(python=sys.executable))
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)
        self.behave()

    def command(self, *arguments: str) -> str:
        """The `exec.command` running it with these arguments (before `get`)."""
        return shlex.join([str(self.path), *arguments])

    def behave(
        self,
        mode: str = "ok",
        *,
        username: str = "puller",
        secret: str = "helper-secret-1",  # noqa: S107 (a test's made-up secret)
        then: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """`then`: the secret of every run after the first (a secret that rotated)."""
        document = {
            "mode": mode,
            "username": username,
            "secret": secret,
            "then": then,
            "delay": delay,
        }
        (self.directory / "behaviour.json").write_text(json.dumps(document))

    def runs(self) -> list[dict[str, Any]]:
        path = self.directory / "runs.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def child_alive(self) -> bool:
        """Whether the `sleep` a hanging run started still runs."""
        pid_file = self.directory / "child.pid"
        if not pid_file.exists():
            return False
        try:
            os.kill(int(pid_file.read_text()), 0)
        except ProcessLookupError:
            return False
        # A zombie left to init is as good as gone; only a running one counts.
        status = Path(f"/proc/{pid_file.read_text()}/stat")
        return status.exists() and status.read_text().split(") ", 1)[1][:1] != "Z"

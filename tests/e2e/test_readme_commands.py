"""Every command the README shows, run with bash as a reader runs it.

The README's ```sh blocks run line by line, as written, in a directory laid
out as the checkout (its `.venv`, `Makefile`, `scripts/`, and the `var/dev`
that `make run` writes), against the token server and registry that
`scripts/devstack.py` starts, with docker pointed at a private engine and
podman and skopeo at a private store and auth file. Only the ports (the
README's 5000 and 5001 may be taken) are substituted. Commands written in
the prose are run here too (`INLINE`), or named with the test that runs them
(`ELSEWHERE`); tests/unit/test_readme_guard.py fails when the README gains
one that is in neither.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.peers import (
    DOCKER_CLIENT_ENV,
    Dockerd,
    env_without,
    free_port,
    printed_until,
    require_binary,
    short_tempdir,
)

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BASH = "/bin/bash"
# The README's addresses, and the password its `tokenserver user add` line sets.
README_REGISTRY = "127.0.0.1:5000"
README_TOKEN = "127.0.0.1:5001"
ALICE_PASSWORD = "s3cret"
# Programs whose name opens a command in the README's prose or output blocks.
PROGRAMS = (
    "make", "tokenserver", "registry-proxy", "docker", "podman", "skopeo", "buildah",
    "curl", "printf", "export",
)  # fmt: skip
ASSIGNMENT = re.compile(r"^[A-Z_]+=\S*$")
# What `make` in a script runs: the venv is taken as installed (it is this interpreter's).
# What an outer `make test` leaves in the environment for its sub-makes.
MAKE_VARS = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")
MAKE_PRELUDE = 'make() { command make -o .venv/.installed "$@"; }\n'
# docker login (the line `make run` prints, and the block's) stores a refresh token;
# podman 4.3 reads docker's config too, and `podman login` to the same registry
# then refuses with "currently logged in, auth file contains an Identity token",
# as it would for a reader sharing ~/.docker; the README says to log in with podman
# where docker has not, so podman gets a docker config of its own here.
PODMAN_PRELUDE = 'podman() { DOCKER_CONFIG="$PODMAN_DOCKER_CONFIG" command podman "$@"; }\n'

# Commands in the prose, each with the line that runs it here (ports substituted later);
# one that opens a line of a shell block (`make image`, `docker load`) runs there.
INLINE = {
    # The line `make run` prints, with the password it printed.
    "docker login 127.0.0.1:5000 -u admin -p '…'": (
        'docker login 127.0.0.1:5000 -u admin -p "$ADMIN_PASSWORD"'
    ),
    "printf '%s\\n' NEWPASS | .venv/bin/tokenserver user passwd admin --password-stdin": (
        "printf '%s\\n' NEWPASS | .venv/bin/tokenserver user passwd admin --password-stdin"
    ),
    "tokenserver keys jwks --output jwks.json": "tokenserver keys jwks --output jwks.json",
    "tokenserver keys jwks --output FILE": "tokenserver keys jwks --output FILE",
    "tokenserver keys generate": "tokenserver keys generate",
    # The README says it fails for anyone outside the admin group, and how.
    "podman search --tls-verify=false 127.0.0.1:5000/": "! podman search --tls-verify=false 127.0.0.1:5000/",
}
# Commands another test runs (or that run the tests), and where.
ELSEWHERE = {
    "make run": "tests/api/test_make_run.py::test_ctrl_c_at_a_terminal_ends_make_run_with_status_0",
    "TOKEN_ADDR=… REGISTRY_ADDR=… make run": (
        "tests/api/test_make_run.py::test_a_taken_port_is_named_and_fails"
    ),
    "make dockerd": "tests/e2e/test_make_dockerd.py",
    "export DOCKER_HOST=…": "tests/e2e/test_make_dockerd.py",
    "make test": "the suite itself (CI runs it)",
    "make check": "the suite itself (make test runs every step of it)",
    "make peers": "make test (its prerequisite)",
    "scripts/install-peers.sh": "make test (through make peers)",
    "make bench": "bench/ (not a test: its figures are read by hand, docs/speed.md)",
    "docker login -u NAME": "tests/e2e/test_personal_token_docker.py",
    "tokenserver personal-token": "tests/e2e/test_personal_token_docker.py",
}


def _joined(lines: list[str]) -> Iterator[str]:
    """The command lines of a shell block: continuations joined, comments and blanks dropped."""
    pending = ""
    for raw in lines:
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        line = re.sub(r"\s+#\s.*$", "", pending + line.strip()).strip()
        pending = ""
        if line and not line.startswith("#"):
            yield re.sub(r"\s+", " ", line)


def _is_command(text: str) -> bool:
    words = text.split()
    while words and ASSIGNMENT.match(words[0]):
        words = words[1:]
    if not words:
        return False
    if words[0].endswith(".sh"):
        return True
    return words[0] in PROGRAMS and len(words) > 1


@dataclass(frozen=True)
class Commands:
    """The README's commands: its shell blocks' lines, and those in prose or output."""

    shell: tuple[str, ...]
    other: tuple[str, ...]


def readme_commands(text: str) -> Commands:
    shell: list[str] = []
    other: list[str] = []
    prose: list[str] = []
    block: list[str] | None = None
    language = ""
    for line in text.splitlines():
        fence = re.match(r"^```(\w*)\s*$", line)
        if fence and block is None:
            block, language = [], fence.group(1)
        elif fence and block is not None:
            if language == "sh":
                shell.extend(_joined(block))
            else:
                other.extend(c for c in (b.strip() for b in block) if _is_command(c))
            block = None
        elif block is not None:
            block.append(line)
        else:
            prose.append(line)
    spans = re.findall(r"`([^`\n]+)`", "\n".join(prose))
    other.extend(s for s in spans if _is_command(s))
    return Commands(tuple(shell), tuple(dict.fromkeys(other)))


def _addressed(command: str, registry: str, token: str) -> str:
    return command.replace(README_REGISTRY, registry).replace(README_TOKEN, token)


@dataclass(frozen=True)
class Devstack:
    """`make run`'s servers, and the directory laid out as its checkout."""

    home: Path
    registry: str
    token: str
    admin_password: str


def _checkout(home: Path) -> None:
    """`home` as a checkout: the venv, the Makefile, and scripts that write under `home`."""
    (home / ".venv").symlink_to(Path(sys.executable).parent.parent)
    (home / "Makefile").symlink_to(ROOT / "Makefile")
    (home / "tests").symlink_to(ROOT / "tests")
    # Copied, not linked: the scripts find the checkout from their own path.
    shutil.copytree(ROOT / "scripts", home / "scripts")


@pytest.fixture
def devstack(tmp_path: Path) -> Iterator[Devstack]:
    home = tmp_path / "checkout"
    home.mkdir()
    _checkout(home)
    registry, token = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = env_without(prefixes=("TOKENSERVER_", "REGISTRY_PROXY_", "REGISTRY_"))
    env.update(
        DEV_DIR=str(home / "var" / "dev"),
        KEYS_DIR=str(home / "keys"),
        TOKEN_ADDR=token,
        REGISTRY_ADDR=registry,
    )
    stack = subprocess.Popen(
        [sys.executable, str(home / "scripts" / "devstack.py")],
        cwd=home,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        banner = printed_until(stack, "Ctrl-C stops everything")
        printed = re.search(r"-u admin -p '([^']+)'", banner)
        assert printed is not None, banner
        yield Devstack(home, registry, token, printed.group(1))
    finally:
        os.killpg(stack.pid, signal.SIGINT)
        try:
            stack.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stack.kill()
            stack.wait()


def _client_env(stack: Devstack, engine: Dockerd, store: Path) -> dict[str, str]:
    """A reader's shell: docker at the private engine, podman and skopeo at private files."""
    conf = store / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "vfs"\nrunroot = "{store / "run"}"\ngraphroot = "{store / "root"}"\n'
    )
    env = env_without(prefixes=("TOKENSERVER_", "REGISTRY_PROXY_", "REGISTRY_"))
    env = {k: v for k, v in env.items() if k not in DOCKER_CLIENT_ENV and k not in MAKE_VARS}
    env.update(
        DOCKER_HOST=engine.host,
        DOCKER_CONFIG=str(engine.config_dir),
        REGISTRY_AUTH_FILE=str(store / "auth.json"),
        CONTAINERS_STORAGE_CONF=str(conf),
        PODMAN_DOCKER_CONFIG=str(store / "podman-docker-config"),
        ADMIN_PASSWORD=stack.admin_password,
        TERM="dumb",
    )
    return env


def bash_at_a_terminal(script: str, cwd: Path, env: dict[str, str], password: str) -> str:
    """Run `script` with `bash -e` on a pseudo-terminal, answering each password prompt.

    docker and podman ask for the password on the terminal, as they do a reader.
    Returns what the terminal showed; fails with it when the script fails.
    """
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(cwd)
        argv = [BASH, "--norc", "--noprofile", "-e", "-x", "-c", script]
        os.execve(BASH, argv, env)  # noqa: S606
    seen = ""
    answered = 0
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 65536).decode(errors="replace")
                except OSError:  # the other end closed: bash has exited
                    break
                if not chunk:
                    break
                seen += chunk
            prompts = seen.count("Password:")
            if prompts > answered and seen.rstrip().endswith("Password:"):
                os.write(fd, f"{password}\n".encode())
                answered = prompts
        else:
            raise AssertionError(f"the script did not finish:\n{seen[-4000:]}")
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, seen[-6000:]
    return seen


def test_every_readme_command_runs(devstack: Devstack, dockerd: Dockerd) -> None:
    for program in ("docker", "podman", "skopeo", "curl", "make"):
        require_binary(program)
    commands = readme_commands(README.read_text())
    store = short_tempdir("rd")
    try:
        env = _client_env(devstack, dockerd, store)
        home = devstack.home

        def run(lines: list[str]) -> str:
            script = (
                MAKE_PRELUDE
                + PODMAN_PRELUDE
                + "\n".join(_addressed(line, devstack.registry, devstack.token) for line in lines)
            )
            return bash_at_a_terminal(script, home, env, ALICE_PASSWORD)

        # What `make run` prints and "Forgot it?", before anything is exported.
        run([INLINE["docker login 127.0.0.1:5000 -u admin -p '…'"]])
        run(
            [
                INLINE[
                    "printf '%s\\n' NEWPASS | .venv/bin/tokenserver user passwd admin --password-stdin"
                ]
            ]
        )
        new = run([f"curl -sf -u admin:NEWPASS 'http://{README_TOKEN}/token?service=registry'"])
        assert '"token"' in new

        # The shell blocks, in order; then the prose's commands in the same shell.
        shell = [c for c in commands.shell if c not in ELSEWHERE]
        seen = run(
            [
                *shell,
                INLINE["podman search --tls-verify=false 127.0.0.1:5000/"],
                INLINE["tokenserver keys jwks --output jwks.json"],
                INLINE["tokenserver keys jwks --output FILE"],
                INLINE["tokenserver keys generate"],
            ]
        )
    finally:
        shutil.rmtree(store, ignore_errors=True)

    assert (home / "var" / "image" / "demo.tar").is_file()
    searched = seen[seen.index("+ podman search") :]
    assert "requested access to the resource is denied" in searched, searched[:2000]
    auth = json.loads((dockerd.config_dir / "config.json").read_text())["auths"]
    assert auth[devstack.registry].get("identitytoken"), "docker login stored no refresh token"
    assert re.search(r"1: digest: sha256:[0-9a-f]{64}", seen)  # docker push
    assert re.search(r'"Tags":\s*\[\s*"v1"\s*\]', seen)  # skopeo list-tags
    assert re.search(r'"access_token":\s*"', seen)  # curl's token
    for name in ("jwks.json", "FILE"):
        assert json.loads((home / name).read_text())["keys"]
    assert len(list((home / "keys").glob("*.key"))) == 2  # keys generate added one

"""Real peers for end-to-end tests, each run on 127.0.0.1 from its own temp dir.

Every peer is a context manager (or call `start()` / `stop()`): it starts the
daemon with its log in its temp dir, waits until it answers, and stops it by
PID. A peer that does not come up raises `PeerStartError` with its log tail.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, Self

import httpx
import psycopg2
import pytest
import yaml

LOOPBACK = "127.0.0.1"
GO_REGISTRY = "/usr/bin/docker-registry"
DOCKERD = "/usr/sbin/dockerd"
DOCKER_CLI = "/usr/bin/docker"
CTR = "/usr/bin/ctr"
CTR_NAMESPACE = "test"
# Linux limits sun_path to 108 bytes including the terminating NUL.
MAX_UNIX_SOCKET_PATH = 107
# dockerd's own containerd appends ".ttrpc" to this socket's path.
CONTAINERD_SOCKET = Path("exec/containerd/containerd.sock")
DOCKER_CLIENT_ENV = ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
LOG_TAIL_BYTES = 4000


class PeerStartError(RuntimeError):
    """A peer exited or did not answer in time; the message ends with its log tail."""


class UnmarkedPeerError(RuntimeError):
    """A test marked neither `peers` nor `e2e` started a peer, which `make check` must not pay for."""


# The test running now, while it may not start a peer (tests/conftest.py sets it).
_unmarked_test: str | None = None


def forbid_peers(test: str | None) -> None:
    """Make `Peer.spawn` refuse while `test` (a node id) runs; None lifts the ban."""
    global _unmarked_test
    _unmarked_test = test


class CommandError(subprocess.CalledProcessError):
    """A failed command whose message carries its output."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on `host` (127.0.0.1, or an IPv6 address such as ::1) that was free a moment ago."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def require_binary(path_or_name: str) -> str:
    """Absolute path of a peer binary; skips the test when missing, fails it in CI."""
    if os.path.isabs(path_or_name):
        found = path_or_name if os.access(path_or_name, os.X_OK) else None
    else:
        search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
        found = shutil.which(path_or_name, path=search)
    if found is None:
        message = f"{path_or_name} is not installed (run scripts/install-peers.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return os.path.abspath(found)


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` and capture its text output; a nonzero exit is returned, not raised."""
    return subprocess.run(
        [os.fspath(part) for part in cmd],
        input=input,
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def checked(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """`result` itself, or a `CommandError` showing its output when it failed."""
    if result.returncode != 0:
        raise CommandError(result.returncode, result.args, result.stdout, result.stderr)
    return result


def printed_until(proc: subprocess.Popen[str], last: str) -> str:
    """What `proc` printed up to the line starting with `last` (its banner's end)."""
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(last):
            return "".join(lines)
    raise AssertionError(f"no line starting {last!r} in:\n" + "".join(lines))


def env_without(prefixes: Sequence[str] = (), names: Sequence[str] = ()) -> dict[str, str]:
    """This process's environment less the named variables and those with a prefix."""
    return {
        key: value
        for key, value in os.environ.items()
        if key not in names and not key.startswith(tuple(prefixes))
    }


def short_tempdir(prefix: str) -> Path:
    """A fresh directory directly in /tmp, short enough for unix socket paths."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def log_tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"<no log: {exc}>"
    return data[-limit:].decode(errors="replace")


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie nobody has reaped yet counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def kill_pid(pid: int, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    """Signal a process that is not our child, then SIGKILL it if it outlives `timeout`."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


class Peer:
    """A daemon started from `argv()` and polled with `ready()` until it answers."""

    name = "peer"
    start_timeout = 30.0
    stop_signal: int = signal.SIGTERM
    stop_timeout = 15.0

    def __init__(self, workdir: str | Path) -> None:
        self.workdir = Path(workdir)
        self.log_path = self.workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write whatever the daemon needs before it starts."""

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def popen_options(self) -> dict[str, Any]:
        return {}

    def cwd(self) -> Path:
        return self.workdir

    def after_start(self) -> None:
        """Finish setting up once the daemon answers."""

    def cleanup(self) -> None:
        """Release what the daemon left behind once it has exited."""

    def start(self) -> Self:
        self.spawn()
        return self.wait_ready()

    def spawn(self) -> None:
        """Start the process without waiting for it (several can then start at once)."""
        if _unmarked_test is not None:
            raise UnmarkedPeerError(
                f"{_unmarked_test} starts {self.name} but is not marked `peers`: have the"
                " fixture that starts it request `real_peer`, or mark the test"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.prepare()
            self._spawn()
        except BaseException:
            self.stop()
            raise

    def wait_ready(self) -> Self:
        try:
            self._wait_ready()
            self.after_start()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=self.cwd(),
                start_new_session=True,
                **self.popen_options(),
            )

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                self._fail(f"exited with status {code}")
            if self._safe_ready():
                return
            if time.monotonic() > deadline:
                self._fail(f"did not answer within {self.start_timeout:.0f} s")
            time.sleep(0.1)

    def _safe_ready(self) -> bool:
        try:
            return self.ready()
        except (OSError, httpx.HTTPError, psycopg2.Error, subprocess.SubprocessError):
            return False

    def _fail(self, why: str) -> NoReturn:
        raise PeerStartError(f"{self.name} {why}; log {self.log_path}:\n{log_tail(self.log_path)}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(self.stop_signal)
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=self.stop_timeout)
        self.cleanup()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()
            proc.wait()

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    # Seconds a line may take to reach the log after what it records happened
    # (our services write theirs in batches: `authcore.jsonlog.INTERVAL`).
    log_settle = 0.0

    def log_text(self) -> str:
        """The log so far, including the lines of whatever the process has done by now."""
        if self.log_settle and self.proc is not None and self.proc.poll() is None:
            time.sleep(self.log_settle)
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class GoRegistry(Peer):
    """The Go distribution registry (`docker-registry serve`) on a free port.

    `token`, when given, becomes its `auth.token` section: realm, service,
    issuer and rootcertbundle are all required by the registry.
    """

    name = "docker-registry"

    def __init__(
        self,
        root_dir: str | Path,
        *,
        token: Mapping[str, Any] | None = None,
        delete: bool = True,
        log_level: str = "info",
        s3: Mapping[str, Any] | None = None,
        redirect: bool = True,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """`s3`, a `storage.s3` section, makes it store in a bucket instead of `storage/`;
        without `redirect` it serves blobs itself rather than redirecting to the bucket;
        `extra` adds top-level sections (`validation`)."""
        super().__init__(root_dir)
        self.extra = dict(extra or {})
        self.s3 = dict(s3) if s3 is not None else None
        self.redirect = redirect
        self.binary = self.find_binary()
        self.port = free_port()
        self.addr = f"{LOOPBACK}:{self.port}"
        self.url = f"http://{self.addr}"
        self.token = dict(token) if token is not None else None
        self.delete = delete
        self.log_level = log_level
        self.storage_dir = self.workdir / "storage"
        self.config_path = self.workdir / "config.yml"

    def find_binary(self) -> str:
        return require_binary(GO_REGISTRY)

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": self.log_level, "fields": {"service": "registry"}},
            "storage": {
                **(
                    {"s3": self.s3}
                    if self.s3 is not None
                    else {"filesystem": {"rootdirectory": str(self.storage_dir)}}
                ),
                "delete": {"enabled": self.delete},
                **({} if self.redirect else {"redirect": {"disable": True}}),
            },
            "http": {"addr": self.addr, "secret": secrets.token_hex(16)},
        }
        if self.token is not None:
            config["auth"] = {"token": self.token}
        return config | self.extra

    def prepare(self) -> None:
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))

    def argv(self) -> list[str]:
        return [self.binary, "serve", str(self.config_path)]

    def env(self) -> dict[str, str]:
        # The registry maps every REGISTRY_* variable onto its configuration; its s3
        # driver would take AWS_* credentials (and refuses to start with AWS_CA_BUNDLE).
        return env_without(prefixes=("REGISTRY_", "AWS_"))

    def ready(self) -> bool:
        response = httpx.get(f"{self.url}/v2/", timeout=2, trust_env=False)
        return response.status_code in (200, 401)


# The current Go registry (3.1.1) is no Debian package: `$REGISTRY_V3`, else the lab's build
# beside the checkout (`../shared/peers/registry-v3` from the project root, or from a folder
# further up, for a checkout made deeper down).
REGISTRY_V3_BUILD = Path("shared") / "peers" / "registry-v3"


def registry_v3_binary() -> str:
    """The registry 3 binary; skips the test when missing, fails it in CI."""
    named = os.environ.get("REGISTRY_V3")
    if named:
        return require_binary(named)
    project = Path(__file__).resolve().parents[2]
    candidates = [folder / REGISTRY_V3_BUILD for folder in project.parents]
    found = next((c for c in candidates if os.access(c, os.X_OK)), candidates[0])
    return require_binary(str(found))


class GoRegistryV3(GoRegistry):
    """The Go distribution registry 3 (`registry serve`): 2.8's keys, plus `auth.token.jwks`.

    `token` may name `rootcertbundle`, `jwks` (a file) or both.
    """

    name = "registry-v3"

    def find_binary(self) -> str:
        return registry_v3_binary()


class Dockerd(Peer):
    """A private Docker engine (and the containerd it starts) on a unix socket.

    Without `tmpdir` it makes a short one in /tmp and removes it on `stop()`.
    """

    name = "dockerd"
    start_timeout = 60.0
    stop_timeout = 30.0

    def __init__(self, tmpdir: str | Path | None = None) -> None:
        self.binary = require_binary(DOCKERD)
        self.cli = require_binary(DOCKER_CLI)
        self.ctr_binary = require_binary(CTR)
        self.owns_dir = tmpdir is None
        super().__init__(short_tempdir("dk") if tmpdir is None else tmpdir)
        self.socket = self.workdir / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.data_root = self.workdir / "data"
        self.exec_root = self.workdir / "exec"
        self.config_dir = self.workdir / "docker-config"
        self.containerd_address = str(self.workdir / CONTAINERD_SOCKET)
        longest = self.containerd_address + ".ttrpc"
        if len(longest.encode()) > MAX_UNIX_SOCKET_PATH:
            raise ValueError(f"{self.workdir} is too long for unix sockets: {longest}")

    def argv(self) -> list[str]:
        return [
            self.binary,
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--bridge=none",
            "--storage-driver=vfs",
            f"--data-root={self.data_root}",
            f"--exec-root={self.exec_root}",
            f"--pidfile={self.workdir / 'pid'}",
            f"--host={self.host}",
            "--insecure-registry=127.0.0.0/8",
        ]

    def prepare(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)

    def ready(self) -> bool:
        return self.docker("version", check=False).returncode == 0 and os.path.exists(
            self.containerd_address
        )

    def client_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = env_without(names=DOCKER_CLIENT_ENV)
        env["DOCKER_CONFIG"] = str(self.config_dir)
        env.update(extra or {})
        return env

    def docker(
        self,
        *args: str | os.PathLike[str],
        input: str | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """`docker -H unix://…/docker.sock ARGS` with this engine's private DOCKER_CONFIG."""
        result = run(
            [self.cli, "-H", self.host, *args],
            input=input,
            env=self.client_env(env),
            timeout=timeout,
        )
        return checked(result) if check else result

    def ctr(
        self,
        *args: str | os.PathLike[str],
        input: str | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """`ctr --address <this engine's containerd> --namespace test ARGS`."""
        cmd = [self.ctr_binary, "--address", self.containerd_address, "--namespace", CTR_NAMESPACE]
        result = run([*cmd, *args], input=input, env={**os.environ, **(env or {})}, timeout=timeout)
        return checked(result) if check else result

    def config_json(self) -> dict[str, Any]:
        """The CLI's config.json (what `docker login` stored), or {} before any login."""
        path = self.config_dir / "config.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _containerd_pid(self) -> int | None:
        try:
            return int((self.exec_root / "containerd" / "containerd.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _unmount_leftovers(self) -> None:
        # dockerd bind-mounts its data root onto itself; a killed dockerd leaves it.
        prefix = str(self.workdir) + "/"
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        targets = [line.split()[1] for line in mounts if len(line.split()) > 1]
        for target in sorted((t for t in targets if t.startswith(prefix)), reverse=True):
            run(["umount", "-l", target], timeout=30)

    def stop(self) -> None:
        containerd_pid = self._containerd_pid()
        super().stop()
        if containerd_pid is not None and pid_alive(containerd_pid):
            kill_pid(containerd_pid)

    def cleanup(self) -> None:
        self._unmount_leftovers()
        if self.owns_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def postgres_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/N/bin that has initdb."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not candidates:
        require_binary("/usr/lib/postgresql/15/bin/initdb")
    return candidates[-1].parent


def unprivileged_user() -> pwd.struct_passwd:
    """The account PostgreSQL runs as: it refuses to run as root."""
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PeerStartError("no 'postgres' or 'nobody' account to run PostgreSQL as")


class Postgres(Peer):
    """A throwaway PostgreSQL cluster on a free port, with one database, trusting everyone.

    It runs as the `postgres` account (else `nobody`), which must be able to reach
    `tmpdir`; without `tmpdir` a short one in /tmp is made and removed on `stop()`.
    """

    name = "postgres"
    # SIGTERM is a "smart" shutdown that waits for every client to disconnect.
    stop_signal = signal.SIGINT

    def __init__(self, tmpdir: str | Path | None = None, *, dbname: str = "test") -> None:
        self.bin_dir = postgres_bin_dir()
        self.user = unprivileged_user()
        self.owns_dir = tmpdir is None
        super().__init__(short_tempdir("pg") if tmpdir is None else tmpdir)
        self.port = free_port()
        self.dbname = dbname
        self.data_dir = self.workdir / "data"
        self.socket_dir = self.workdir / "sock"
        self.url = f"postgresql+psycopg2://postgres@{LOOPBACK}:{self.port}/{dbname}"
        self.dsn = f"host={LOOPBACK} port={self.port} user=postgres dbname={dbname}"

    def popen_options(self) -> dict[str, Any]:
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def env(self) -> dict[str, str]:
        env = env_without(prefixes=("PG",))
        env.update(HOME=str(self.workdir), LC_ALL="C.UTF-8")
        return env

    def prepare(self) -> None:
        for directory in (self.workdir, self.socket_dir):
            directory.mkdir(parents=True, exist_ok=True)
            os.chown(directory, self.user.pw_uid, self.user.pw_gid)
        if (self.data_dir / "PG_VERSION").exists():
            return
        initdb = [
            str(self.bin_dir / "initdb"),
            f"--pgdata={self.data_dir}",
            "--username=postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        ]
        result = subprocess.run(
            initdb,
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=self.workdir,
            timeout=120,
            check=False,
            **self.popen_options(),
        )
        if result.returncode != 0:
            raise PeerStartError(
                f"initdb as {self.user.pw_name} failed (it must reach {self.workdir}; "
                f"leave tmpdir unset for a private one in /tmp):\n{result.stdout}\n{result.stderr}"
            )

    def argv(self) -> list[str]:
        return [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-k",
            str(self.socket_dir),
            "-h",
            LOOPBACK,
            "-p",
            str(self.port),
            # Durability is irrelevant for a throwaway cluster; speed is not.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]

    def connect(self, dbname: str | None = None) -> Any:
        """A psycopg2 connection as the `postgres` superuser."""
        return psycopg2.connect(
            host=LOOPBACK,
            port=self.port,
            user="postgres",
            dbname=dbname or self.dbname,
            connect_timeout=5,
        )

    def ready(self) -> bool:
        self.connect("postgres").close()
        return True

    def after_start(self) -> None:
        self._create(self.dbname)

    def new_database(self, dbname: str) -> str:
        """A database of its own for one test (on this cluster); its SQLAlchemy URL."""
        self._create(dbname)
        return self.url.rsplit("/", 1)[0] + f"/{dbname}"

    def _create(self, dbname: str) -> None:
        conn = self.connect("postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{dbname}"')
        finally:
            conn.close()

    def cleanup(self) -> None:
        if self.owns_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)


class Skopeo:
    """skopeo with a private auth file, so logins never touch the machine's own."""

    def __init__(self, tmpdir: str | Path) -> None:
        self.binary = require_binary("skopeo")
        self.auth_file = Path(tmpdir) / "auth.json"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = env_without(prefixes=("REGISTRY_",))
        env["REGISTRY_AUTH_FILE"] = str(self.auth_file)
        env.update(extra or {})
        return env

    def __call__(
        self,
        *args: str | os.PathLike[str],
        input: str | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        result = run([self.binary, *args], input=input, env=self.env(env), timeout=timeout)
        return checked(result) if check else result

"""Credentials for an upstream from a docker credential helper (`exec` in the configuration).

The helper runs as docker runs one: `<command> get`, the command split into
words as a shell would split it but run without a shell, the upstream's URL
on its standard input. It answers `{"ServerURL": …, "Username": …,
"Secret": …}` on its standard output and exits 0; anything else is
`UpstreamUnavailable`. A run is bounded: DEADLINE seconds, then it is
killed with whatever it started in its session; MAX_OUTPUT bytes of
standard output, more is refused. Its standard error is counted and never
kept, since a helper that fails may print the very secret it was handling:
the log says only its size and the exit status, and messages name the
program alone (its arguments may hold a secret too).

What a run gives is kept for `lifetime` seconds: None keeps it for ever (the
helper runs once), 0 keeps nothing (it runs each time credentials are
needed). Callers arriving while a run is under way wait for that run. Told
the credentials were refused, the source runs the helper again unless it
runs only once.

The helper gets this process's environment, where it finds its own
configuration and cloud credentials (PATH, HOME, DOCKER_CONFIG, AWS_* …),
less the variables that configure our servers (OUR_PREFIXES): those may
hold our storage keys or other upstreams' passwords.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import shlex
import signal
import time
from collections.abc import AsyncIterator, Callable, Mapping

from authcore import capped
from registry_proxy.upstreams.credentials import Credentials
from registry_proxy.upstreams.errors import UpstreamUnavailable

__all__ = [
    "DEADLINE",
    "MAX_OUTPUT",
    "OUR_PREFIXES",
    "ExecCredentials",
    "helper_argv",
    "helper_environment",
]

log = logging.getLogger("registry_proxy.upstreams")

DEADLINE = 10.0
MAX_OUTPUT = 64 * 1024
OUR_PREFIXES = ("REGISTRY_PROXY_", "TOKENSERVER_")
_READ_SIZE = 64 * 1024
_PROGRAM_CHARS = 64


def helper_argv(command: str) -> list[str]:
    """The helper's argv for `get`; ValueError for a command that names no program."""
    try:
        words = shlex.split(command)
    except ValueError:
        raise ValueError("cannot be split into words (an unclosed quote?)") from None
    if not words or "\x00" in command:
        raise ValueError("must name a program")
    return [*words, "get"]


def helper_environment(environ: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in environ.items() if not name.startswith(OUR_PREFIXES)}


class ExecCredentials:
    """A `CredentialSource` that asks a docker credential helper."""

    def __init__(
        self,
        command: str,
        server_url: str,
        *,
        lifetime: float | None,
        deadline: float = DEADLINE,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._argv = helper_argv(command)
        program = os.path.basename(self._argv[0])[:_PROGRAM_CHARS]
        self._what = f"credential helper {program!r}"
        self._stdin = server_url.encode()
        self._lifetime, self._deadline, self._clock = lifetime, deadline, clock
        self._environ = helper_environment(os.environ if environ is None else environ)
        # What the last run gave, and the clock's time after which it is not given again.
        self._held: tuple[Credentials, float] | None = None
        self._running: asyncio.Task[Credentials] | None = None

    def __repr__(self) -> str:
        return f"ExecCredentials({self._what!r})"

    async def __call__(self, refused: Credentials | None = None) -> Credentials:
        held = self._held
        if held is not None:
            if refused is not None and held[0] == refused and self._lifetime is not None:
                self._held = None
            elif self._clock() < held[1]:
                return held[0]
        task = self._running
        if task is None:
            task = self._running = asyncio.ensure_future(self._renew())
            task.add_done_callback(self._settled)
        # One caller giving up (its own deadline) must not end the run the others wait for.
        return await asyncio.shield(task)

    async def aclose(self) -> None:
        task = self._running
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    async def _renew(self) -> Credentials:
        asked = self._clock()
        credentials = await self._run()
        if self._lifetime is None:
            self._held = (credentials, math.inf)
        elif self._lifetime > 0:
            self._held = (credentials, asked + self._lifetime)
        return credentials

    def _settled(self, task: asyncio.Task[Credentials]) -> None:
        if self._running is task:
            self._running = None
        if not task.cancelled():
            # Retrieved here, so a failure nobody waited for any more is not logged as lost.
            task.exception()

    async def _run(self) -> Credentials:
        try:
            process = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._environ,
                # Its own process group, so a kill reaches what it started too.
                start_new_session=True,
            )
        except OSError as exc:
            raise self._failed(f"cannot be started ({type(exc).__name__})") from None
        try:
            async with asyncio.timeout(self._deadline):
                output, status, noise = await self._talk(process)
        except TimeoutError:
            raise self._failed(f"no answer within {self._deadline:g} s") from None
        finally:
            await _end(process)
        if output is None:
            raise self._failed(f"more than {MAX_OUTPUT} bytes of output", noise=noise)
        if status != 0:
            raise self._failed(f"exited with status {status}", noise=noise)
        return self._read(output)

    async def _talk(self, process: asyncio.subprocess.Process) -> tuple[bytes | None, int, int]:
        """Its output (None past MAX_OUTPUT), exit status and count of bytes on stderr."""
        assert process.stdin and process.stdout and process.stderr  # all three are pipes
        await _feed(process.stdin, self._stdin)
        counting = asyncio.ensure_future(_count(process.stderr))
        try:
            output = await capped.read_capped(_chunks(process.stdout), MAX_OUTPUT)
            if output is None:
                return None, -1, 0
            status = await process.wait()
            return output, status, await counting
        finally:
            counting.cancel()

    def _read(self, output: bytes) -> Credentials:
        try:
            answer = json.loads(output)
        except (ValueError, RecursionError):
            answer = None
        if not isinstance(answer, dict):
            raise self._failed("answered no JSON object")
        username, secret = answer.get("Username"), answer.get("Secret")
        if not isinstance(username, str) or not isinstance(secret, str) or not secret:
            raise self._failed("answered no Username and Secret")
        if not username or ":" in username:
            raise self._failed("answered a Username Basic authentication cannot carry")
        return Credentials(username, secret)

    def _failed(self, reason: str, *, noise: int = 0) -> UpstreamUnavailable:
        log.warning(
            "credential helper failed",
            extra={"helper": self._what, "reason": reason, "stderr_bytes": noise},
        )
        return UpstreamUnavailable(f"{self._what}: {reason}")


async def _feed(stdin: asyncio.StreamWriter, data: bytes) -> None:
    try:
        stdin.write(data)
        await stdin.drain()
        stdin.close()
        await stdin.wait_closed()
    except (BrokenPipeError, ConnectionResetError):
        pass  # a helper need not read its input


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while chunk := await reader.read(_READ_SIZE):
        yield chunk


async def _count(reader: asyncio.StreamReader) -> int:
    total = 0
    async for chunk in _chunks(reader):
        total += len(chunk)
    return total


async def _end(process: asyncio.subprocess.Process) -> None:
    """The helper gone: killed with its session if still running, then reaped."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()

"""The one way both services run under uvicorn, so its settings live in one place.

With `workers` > 1 the listening socket is bound here and the process forks
that many workers, each a full server over the same socket with the same
guarded protocol, its own event loop, app lifespan, caches and threads; the
kernel spreads the connections. The first process only supervises: a stop
signal (SIGTERM, SIGINT) goes on to every worker, and it exits once they
have; a worker that dies on its own stops the others and the server exits
non-zero, for whatever supervises it to restart. A worker whose supervisor
is gone (killed outright) is told to stop (SIGTERM).

Why not uvicorn's own `workers` (its `Multiprocess` supervisor, 0.55):

- it starts each worker as a fresh interpreter (`spawn`) and sends it the
  `uvicorn.Config` by pickling, so it takes the app only as an import string,
  rebuilt in each worker from what that worker can read alone. Our apps are
  built from the configuration the command line loaded and checked (`--addr`,
  a bind password read from its file), our JSON logging is set up before
  `serve` and a spawned worker would not have it, and the protocol class
  bound to these limits is made at run time and does not pickle. A forked
  worker has all of it as the supervisor built it.
- it restarts a worker that dies, and kills one whose health-check pipe
  goes unanswered for `timeout_worker_healthcheck`; here a worker gone on its
  own stops the server with its status, so a crash is seen by the service
  manager, which restarts the whole server, rather than hidden by a respawn.
- nothing ties its workers to it: killed outright, it leaves them serving
  on. Ours die with it (`_die_with_parent`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from authcore.http_limits import ServingSettings
from authcore.http_server import Refusal, guarded_protocol
from authcore.jsonlog import stop_logging
from authcore.settings import ConfigError

__all__ = ["serve"]

# uvicorn's exit status for a server that never started.
STARTUP_FAILURE = 3
_PR_SET_PDEATHSIG = 1


def serve(
    app: ASGIApp,
    settings: ServingSettings,
    *,
    section: str,
    refusal: Refusal,
    graceful_shutdown: int = 5,
    prepare: Callable[[], None] | None = None,
) -> None:
    """Run `app` until stopped; `section` names the settings' key in messages.

    `prepare` runs once before any worker starts (a schema migration), so
    workers do not race at it.
    """
    certificate, key = settings.tls.certificate, settings.tls.key
    if (certificate is None) != (key is None):
        raise ConfigError(f"{section}.tls.certificate and {section}.tls.key must be set together")
    trusted_proxies = settings.trusted_proxies
    options: dict[str, Any] = dict(
        host=settings.host,
        port=settings.port,
        http=guarded_protocol(settings.limits, refusal),
        # Neither service speaks WebSocket; an upgrade must not hand the
        # connection to a protocol without these limits.
        ws="none",
        log_config=None,
        access_log=False,
        server_header=False,
        # Requests in flight get this long at shutdown; idle keep-alive
        # connections would otherwise hold it for 30 s.
        timeout_graceful_shutdown=graceful_shutdown,
        ssl_certfile=str(certificate) if certificate else None,
        ssl_keyfile=str(key) if key else None,
        # X-Forwarded-For only from proxies the operator named: otherwise any
        # local client could choose the address it is logged and judged by.
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=",".join(trusted_proxies) or None,
    )
    try:
        if prepare is not None:
            prepare()
        if settings.workers == 1:
            _flush_logs_on_stop_signals()
            uvicorn.run(app, **options)
        else:
            _supervise(uvicorn.Config(app, **options), settings.workers)
    finally:
        stop_logging()


def _supervise(config: uvicorn.Config, workers: int) -> None:
    sock = config.bind_socket()  # exits with a message when the address is taken
    children: dict[int, int] = {}  # pid -> worker number
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            _signal(pid, signal.SIGTERM)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    for number in range(workers):
        children[_fork_worker(config, sock)] = number
    sock.close()
    if stopping:  # a stop signal came while the workers were being started
        stop(signal.SIGTERM, None)
    status = 0
    while children:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        children.pop(pid, None)
        code = os.waitstatus_to_exitcode(wait_status)
        if not stopping:
            # One worker gone on its own: the server is not what was asked for.
            status = code if code > 0 else 1
            stop(signal.SIGTERM, None)
        elif code > 0:
            status = status or code
    if status:
        sys.exit(status)


def _fork_worker(config: uvicorn.Config, sock: socket.socket) -> int:
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        _flush_logs_on_stop_signals()
        _die_with_parent(parent)
        server = uvicorn.Server(config)
        server.run(sockets=[sock])
        code = 0 if server.started else STARTUP_FAILURE
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        stop_logging()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _flush_logs_on_stop_signals() -> None:
    # uvicorn handles SIGTERM and SIGINT while it serves, and when it is done
    # raises the signal again for the handler it found: this one, which writes
    # the queued log lines before the signal ends the process.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _flush_then_default)


def _flush_then_default(signum: int, _frame: FrameType | None) -> None:
    stop_logging()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _die_with_parent(parent: int) -> None:
    # Linux: SIGTERM this worker when the supervisor dies (even by SIGKILL),
    # so a worker never serves on without it.
    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the supervisor died before the prctl
        os.kill(os.getpid(), signal.SIGTERM)

"""The one way both services run under uvicorn, so its settings live in one place."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from authcore.http_limits import Limits
from authcore.http_server import Refusal, guarded_protocol

__all__ = ["serve"]


def serve(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    limits: Limits,
    refusal: Refusal,
    trusted_proxies: Sequence[str] = (),
    certificate: Path | None = None,
    key: Path | None = None,
    graceful_shutdown: int = 5,
) -> None:
    uvicorn.run(
        app,
        host=host,
        port=port,
        http=guarded_protocol(limits, refusal),
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

"""The one way both services run under uvicorn, so its settings live in one place."""

from __future__ import annotations

import uvicorn
from starlette.types import ASGIApp

from authcore.http_limits import ServingSettings
from authcore.http_server import Refusal, guarded_protocol
from authcore.settings import ConfigError

__all__ = ["serve"]


def serve(
    app: ASGIApp,
    settings: ServingSettings,
    *,
    section: str,
    refusal: Refusal,
    graceful_shutdown: int = 5,
) -> None:
    """Run `app` until stopped; `section` names the settings' key in messages."""
    certificate, key = settings.tls.certificate, settings.tls.key
    if (certificate is None) != (key is None):
        raise ConfigError(f"{section}.tls.certificate and {section}.tls.key must be set together")
    trusted_proxies = settings.trusted_proxies
    uvicorn.run(
        app,
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

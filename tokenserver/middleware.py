"""Per-request context and the access log line (pure ASGI, so context stays in one task)."""

from __future__ import annotations

import logging
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokenserver.context import request_scope

__all__ = ["RequestContextMiddleware"]


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, logger: str = "tokenserver.access") -> None:
        self.app = app
        self.log = logging.getLogger(logger)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with request_scope(secrets.token_hex(8)):
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                # The path only: query strings and bodies may carry credentials.
                self.log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                        "client": (scope.get("client") or ("", 0))[0],
                    },
                )

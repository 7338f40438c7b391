"""A provider that answers what no honest one does: discovery and keys of a local OpenID
issuer (`tests.support.oidc`), and a token endpoint answering whatever the test sets."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.support.oidc import OIDCIssuer

__all__ = ["FakeProvider"]


class FakeProvider(OIDCIssuer):
    """Discovery, keys, and a token endpoint answering whatever `answer` makes of the nonce."""

    def __init__(self, directory: Path) -> None:
        self.answer: Callable[[str], tuple[int, bytes, float]] = lambda nonce: (500, b"", 0.0)
        self.nonce = ""
        super().__init__(directory)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        base = super()._handler()
        provider = self

        class Handler(base):  # type: ignore[misc, valid-type]
            def do_GET(self) -> None:
                if self.path != "/.well-known/openid-configuration":
                    return super().do_GET()  # type: ignore[no-any-return]
                url = provider.url
                document = {
                    "issuer": url,
                    "authorization_endpoint": f"{url}/authorize",
                    "token_endpoint": f"{url}/token",
                    "jwks_uri": f"{url}/.well-known/jwks",
                }
                self._send(200, json.dumps(document).encode(), 0.0)
                return None

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                self._send(*provider.answer(provider.nonce))

            def _send(self, status: int, body: bytes, delay: float) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # A slow answer comes a few bytes at a time.
                step = 16 if delay else 64 * 1024
                try:
                    for at in range(0, len(body), step):
                        time.sleep(delay)
                        self.wfile.write(body[at : at + step])
                        self.wfile.flush()
                except OSError:
                    pass  # the server stopped reading: as it should

        return Handler

    def id_token(self, nonce: str, **change: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": "registry-auth",
            "sub": "fake-1",
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
            "preferred_username": "faker",
            "groups": ["ops"],
        }
        return {k: v for k, v in (claims | change).items() if v is not None}

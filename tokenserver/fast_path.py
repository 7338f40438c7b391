"""The warm token path's special code, in one place, each piece with what it buys.

Docker asks for a token before every push and pull, and with the credential
cache warm a `GET /token` never leaves the event loop: ~140-180 us of it per
request, the ES256 signature about a quarter (docs/speed.md has the whole
server's figures). What is here exists for speed alone, and each piece is
tested against the ordinary way it stands in for (tests/unit/test_fast_path.py
compares the spellings byte for byte; every GET /token test goes through
`TokenApp`):

- `TokenApp` takes `GET /token` from the request middleware straight to its
  route's endpoint, past the framework's middleware stack, routing and
  dependency solving: 217 us a warm request in-process against 474 through
  the framework (medians of seven rounds of 500, alternating).
- `claims_json` spells a claim set as compact JSON itself: 3.7 us against
  8.6 for `json.dumps(claims.to_dict(), separators=...)`, which builds an
  encoder per call.
- `token_answer` spells the answer the same way (2.8 us against 9.1 for
  `json.dumps` of its dict, with an 800-byte token) and carries the headers
  every token answer has, built once.
- `SecondStamps` writes `issued_at` once per second: 1.6 us against 12.9 for
  `strftime` on every token.

The signature itself is `jws.CompactSigner`'s, which says what it saves
over PyJWT; `authcore/http_server.py` writes a small answer's head and body
in one send.

Measured with `timeit` (medians of nine interleaved rounds) and the app
driven in-process, on the 2-core development machine, 2026-12-07, while
other work shared it: the ratios hold, the microseconds drift.
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from json.encoder import encode_basestring_ascii as _quote
from typing import Any, cast

from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from authcore.claims import ClaimSet
from authcore.middleware import Observer, RequestMiddleware

__all__ = ["SecondStamps", "TokenAnswer", "TokenApp", "claims_json", "token_answer"]

# A token answer is JSON and never cached (RFC 6749 §5.1).
_ANSWER_HEADERS = (
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
)


class TokenAnswer(Response):
    """A granted token's JSON, with the headers of every token answer built once."""

    media_type = "application/json"

    def __init__(self, body: str) -> None:
        super().__init__(body.encode("utf-8"))

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        self.raw_headers = [(b"content-length", b"%d" % len(self.body)), *_ANSWER_HEADERS]


def token_answer(
    token: str, expires_in: int, issued_at: str, extra: Sequence[tuple[str, str]] = ()
) -> TokenAnswer:
    """The answer to a granted token request; `extra` are string members, in order."""
    value = _quote(token)
    parts = [
        f'{{"token":{value},"access_token":{value},"token_type":"Bearer",'
        f'"expires_in":{expires_in:d},"issued_at":{_quote(issued_at)}'
    ]
    parts += [f",{_quote(name)}:{_quote(text)}" for name, text in extra]
    parts.append("}")
    return TokenAnswer("".join(parts))


def claims_json(claims: ClaimSet) -> str:
    """`claims.to_dict()` as compact JSON, every string escaped by the json module's own quoting."""
    access = ",".join(
        f'{{"type":{_quote(a.type)},"name":{_quote(a.name)},'
        f'"actions":[{",".join(map(_quote, sorted(a.actions)))}]}}'
        for a in claims.access
    )
    return (
        f'{{"iss":{_quote(claims.issuer)},"sub":{_quote(claims.subject)},'
        f'"aud":{_quote(claims.audience)},"exp":{claims.expires_at:d},'
        f'"nbf":{claims.not_before:d},"iat":{claims.issued_at:d},'
        f'"jti":{_quote(claims.jwt_id)},"access":[{access}]}}'
    )


class SecondStamps:
    """RFC 3339 spellings of whole seconds, the last one remembered: a second's tokens share it."""

    def __init__(self) -> None:
        self._last: tuple[int, str] = (-1, "")

    def at(self, now: dt.datetime, second: int) -> str:
        """`now` (whose POSIX time is `second`) as `YYYY-MM-DDTHH:MM:SSZ`."""
        last = self._last
        if last[0] != second:
            last = self._last = (second, now.strftime("%Y-%m-%dT%H:%M:%SZ"))
        return last[1]


Endpoint = Callable[[Request], Awaitable[Response]]


class TokenApp(FastAPI):
    """The token server's application: GET /token straight to its endpoint, the rest as usual.

    Every request passes `RequestMiddleware` first (context, access line,
    metrics). GET /token then skips the framework's middleware stack,
    routing and dependency solving; an exception the app has a handler for
    goes to that handler, so a refusal is answered as the router would have
    answered it, and the request is labelled with the route, for the
    metrics, as the router would have labelled it. `token_routes` are
    included in the app as usual too (POST /token, the API schema); their
    GET /token endpoint takes the request alone.
    """

    PATH = "/token"

    def __init__(
        self, *, token_routes: APIRouter, observers: Sequence[Observer] = (), **options: Any
    ) -> None:
        super().__init__(**options)
        self._front = RequestMiddleware(
            self._dispatch, logger="tokenserver.access", observers=observers
        )
        # From the token routes themselves: the app holds an included router
        # as one entry, not its routes.
        self._route = next(
            r
            for r in token_routes.routes
            if isinstance(r, Route) and r.path == self.PATH and "GET" in (r.methods or ())
        )
        self._endpoint = cast(Endpoint, self._route.endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._front(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.PATH or scope["method"] != "GET":
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        scope["route"] = self._route
        request = Request(scope, receive)
        response: Response
        try:
            response = await self._endpoint(request)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            answer = handler(request, exc)
            response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Callable[[Request, Exception], Any] | None:
        # As the framework's exception middleware looks it up: the nearest
        # class in the exception's MRO with a handler. Anything else goes up
        # to the server, which answers 500, as it did through the framework.
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None
            handler = self.exception_handlers.get(cls)
            if handler is not None:
                return cast(Callable[[Request, Exception], Any], handler)
        return None

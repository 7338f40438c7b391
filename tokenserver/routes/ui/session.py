"""Who is signed in to the web page, and whether a form really came from it.

A session is a row in the database (any instance knows it) named by a random
cookie: `HttpOnly`, `SameSite=Strict`, `Secure` over HTTPS, expiring. Each
request asks the accounts service whether its person is still the account
that signed in, enabled; a session that fails is ended there, not merely
refused. Any person may be signed in (`signed_in`); the admin pages ask
for a member of the `admin` group too (`admin_signed_in`), and send anyone
else to their own page. Every form carries the session's CSRF token; the
sign-in form, before any session, a double-submit token from a cookie of
its own.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from authcore.identity import Identity
from tokenserver.accounts import Session
from tokenserver.audit import Actor
from tokenserver.authz.policy import ADMIN_GROUP
from tokenserver.bodies import read_limited
from tokenserver.forms import Params, parse_params
from tokenserver.routes.common import services

__all__ = [
    "LOGIN_COOKIE",
    "PATH",
    "SESSION_COOKIE",
    "AdminRequired",
    "CSRFRefused",
    "SignInRequired",
    "SignedIn",
    "admin_signed_in",
    "posted",
    "read_form",
    "set_cookie",
    "signed_in",
]

PATH = "/ui"
SESSION_COOKIE = "ts_session"
LOGIN_COOKIE = "ts_login"


class SignInRequired(Exception):
    """No live session (or its person no longer qualifies): off to the sign-in page."""


class AdminRequired(Exception):
    """A person signed in, but not an admin, asked for an admin page."""


class CSRFRefused(Exception):
    """A form without the token its page gave it: someone else's page sent it."""


@dataclass(frozen=True)
class SignedIn:
    actor: Actor
    identity: Identity
    session: Session
    cookie: str

    @property
    def is_admin(self) -> bool:
        return ADMIN_GROUP in self.identity.groups


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


async def signed_in(request: Request) -> SignedIn:
    """The request's live session, or `SignInRequired`."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or len(cookie) > 256:
        raise SignInRequired
    found = await run_in_threadpool(services(request).accounts.ui_session, cookie)
    if found is None:
        raise SignInRequired
    session, identity = found
    ip = request.client.host if request.client else ""
    agent = request.headers.get("user-agent", "")[:512]
    actor = Actor(session.subject, "ui", "user", session.backend, ip, agent)
    return SignedIn(actor, identity, session, cookie)


async def admin_signed_in(request: Request) -> SignedIn:
    """The request's live session of an admin; `SignInRequired` or `AdminRequired`."""
    who = await signed_in(request)
    if not who.is_admin:
        raise AdminRequired
    return who


async def read_form(request: Request, expected_csrf: str) -> Params:
    """The posted form, if it carries `expected_csrf`; else `CSRFRefused`."""
    limit = services(request).config.server.max_body_bytes
    form = parse_params(await read_limited(request, limit))
    given = form.one("csrf") or ""
    if not expected_csrf or not hmac.compare_digest(given.encode(), expected_csrf.encode()):
        raise CSRFRefused
    return form


async def posted(request: Request, *, anyone: bool = False) -> tuple[SignedIn, Params]:
    """Who posts (an admin, unless `anyone` may), and the form, its CSRF token checked
    against their session's."""
    who = await (signed_in if anyone else admin_signed_in)(request)
    return who, await read_form(request, who.session.csrf)


def new_login_token() -> str:
    return secrets.token_urlsafe(24)

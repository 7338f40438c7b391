"""Who is signed in to the web page, and whether a form really came from it.

A session is a row in the database (any instance knows it) named by a random
cookie: `HttpOnly`, `SameSite=Strict`, `Secure` over HTTPS, expiring. Each
request re-checks that its admin still exists, is enabled and is in the
`admin` group, as the admin API does for Bearer tokens. Every form carries
the session's CSRF token; the sign-in form, before any session, a
double-submit token from a cookie of its own.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from authcore.identity import Identity
from tokenserver.audit import Actor
from tokenserver.authn.base import BackendUnavailable
from tokenserver.authz.policy import ADMIN_GROUP
from tokenserver.bodies import read_limited
from tokenserver.forms import Params, parse_params
from tokenserver.grants import GrantService
from tokenserver.store.ui_sessions import Session, UISessionStore

__all__ = [
    "LOGIN_COOKIE",
    "PATH",
    "SESSION_COOKIE",
    "CSRFRefused",
    "SignInRequired",
    "SignedIn",
    "read_form",
    "set_cookie",
    "signed_in",
]

PATH = "/ui"
SESSION_COOKIE = "ts_session"
LOGIN_COOKIE = "ts_login"


class SignInRequired(Exception):
    """No live session (or its admin no longer qualifies): off to the sign-in page."""


class CSRFRefused(Exception):
    """A form without the token its page gave it: someone else's page sent it."""


@dataclass(frozen=True)
class SignedIn:
    actor: Actor
    identity: Identity
    session: Session
    cookie: str


def _grants(request: Request) -> GrantService:
    grants: GrantService = request.app.state.grants
    return grants


def store(request: Request) -> UISessionStore:
    sessions: UISessionStore = request.app.state.ui_sessions
    return sessions


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


def _still_admin(request: Request, session: Session) -> Identity | None:
    """Blocking: the session's subject, asked of the backends again; None if no longer admin."""
    try:
        found = _grants(request).authenticator.find(session.subject)
    except BackendUnavailable:
        return None
    if found is None or ADMIN_GROUP not in found[1].groups:
        return None
    backend, account = found
    return account.identity(backend)


async def signed_in(request: Request) -> SignedIn:
    """The request's live session, or `SignInRequired`."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or len(cookie) > 256:
        raise SignInRequired
    now: dt.datetime = _grants(request).clock()
    session = await run_in_threadpool(store(request).get, cookie, now)
    if session is None:
        raise SignInRequired
    identity = await run_in_threadpool(_still_admin, request, session)
    if identity is None:
        raise SignInRequired
    ip = request.client.host if request.client else ""
    agent = request.headers.get("user-agent", "")[:512]
    actor = Actor(session.subject, "ui", "user", session.backend, ip, agent)
    return SignedIn(actor, identity, session, cookie)


async def read_form(request: Request, expected_csrf: str) -> Params:
    """The posted form, if it carries `expected_csrf`; else `CSRFRefused`."""
    limit: int = request.app.state.config.server.max_body_bytes
    form = parse_params(await read_limited(request, limit))
    given = form.one("csrf") or ""
    if not expected_csrf or not hmac.compare_digest(given.encode(), expected_csrf.encode()):
        raise CSRFRefused
    return form


def new_login_token() -> str:
    return secrets.token_urlsafe(24)

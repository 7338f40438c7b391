"""Signing in and out of the web page: any person with a password; admins land on the
users, everyone else on their own page."""

from __future__ import annotations

import datetime as dt
import hmac

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from authcore.identity import Identity
from tokenserver.audit import Actor, Outcome
from tokenserver.authz.policy import ADMIN_GROUP
from tokenserver.bodies import read_limited
from tokenserver.forms import parse_params
from tokenserver.refusals import Refused
from tokenserver.routes.common import services
from tokenserver.routes.ui.common import local_path
from tokenserver.routes.ui.render import page
from tokenserver.routes.ui.session import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    CSRFRefused,
    new_login_token,
    posted,
    set_cookie,
)

__all__ = ["router"]

router = APIRouter()

_LOGIN_TOKEN_AGE = 3600


def login_page(
    request: Request, error: str | None = None, status: int = 200, return_to: str | None = None
) -> Response:
    """The sign-in page: the password form unless `ui.password_login` is off, and the
    OpenID provider's button when `sso` is configured; both go back to `return_to`."""
    config = services(request).config
    token = new_login_token()
    response = page(
        request,
        "login.html",
        status,
        csrf=token,
        error=error,
        password_login=config.ui.password_login,
        sso_name=None if config.sso is None else config.sso.display_name,
        return_to=return_to,
    )
    set_cookie(request, response, LOGIN_COOKIE, token, _LOGIN_TOKEN_AGE)
    return response


def landing(identity: Identity, return_to: str | None) -> str:
    """Where a sign-in goes: back where it was asked for, else the admin pages for an
    admin and a person's own page for everyone else."""
    return return_to or ("/ui/users" if ADMIN_GROUP in identity.groups else "/ui/me")


def after_sign_in(
    request: Request, cookie: str, ttl: int, destination: str, *, from_elsewhere: bool = False
) -> Response:
    """The answer that opens a web session: its cookie, and on to `destination`.

    `from_elsewhere`: the browser came from another site (the OpenID provider's
    redirect). A redirect would carry that on, and a browser sends no
    `SameSite=Strict` cookie, the session's, on a navigation another site began:
    a page of ours moves on instead (a meta refresh; no script), which begins
    a navigation of this site.
    """
    response: Response
    if from_elsewhere:
        response = page(request, "signed_in.html", 200, destination=destination)
    else:
        response = RedirectResponse(destination, status_code=303)
    set_cookie(request, response, SESSION_COOKIE, cookie, ttl)
    response.delete_cookie(LOGIN_COOKIE, path="/ui")
    return response


@router.get("/", include_in_schema=False)
async def home() -> Response:
    return RedirectResponse("/ui/users", status_code=303)


@router.get("/login", include_in_schema=False)
async def login_form(request: Request) -> Response:
    return login_page(request, return_to=local_path(request.query_params.get("return_to")))


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    svc = services(request)
    if not svc.config.ui.password_login:
        reason = "Signing in with a password is switched off here."
        return page(request, "refused.html", 404, reason=reason)
    form = parse_params(await read_limited(request, svc.config.server.max_body_bytes))
    expected = request.cookies.get(LOGIN_COOKIE, "")
    given = form.one("csrf") or ""
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise CSRFRefused
    username, password = form.one("username") or "", form.secret("password")
    return_to = local_path(form.one("return_to"))
    ip = request.client.host if request.client else ""
    agent = request.headers.get("user-agent", "")[:512]
    attempt = Actor(username[:255], "ui", "user", "", ip, agent)

    def refuse(outcome: Outcome, message: str) -> Response:
        svc.trail.record(attempt, "ui.signin", "", outcome)
        status = 401 if outcome == "bad_credentials" else 403
        return login_page(request, message, status, return_to)

    if not username or password is None:
        return refuse("bad_credentials", "Give a user name and a password.")
    try:
        identity = await svc.grants.authenticate(username, password, ip)
    except Refused as exc:
        return refuse(exc.outcome, "Those credentials do not sign in here.")
    # People sign in with their password: not a CI token, a trust, or a
    # personal token (whose session would hold more than its scopes).
    if identity.kind != "user" or identity.limit is not None:
        return refuse("forbidden", "Only people sign in here, with their password.")
    ttl = svc.config.ui.session_ttl
    opened = await run_in_threadpool(
        svc.accounts.open_ui_session, identity, dt.timedelta(seconds=ttl)
    )
    if opened is None:  # the account changed (a new password, say) while this sign-in ran
        return refuse("bad_credentials", "Those credentials do not sign in here.")
    cookie, _session = opened
    actor = Actor(identity.subject, "ui", "user", identity.backend, ip, agent)
    svc.trail.record(actor, "ui.signin", "", "ok")
    return after_sign_in(request, cookie, ttl, landing(identity, return_to))


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    who, _form = await posted(request, anyone=True)
    await run_in_threadpool(services(request).accounts.close_ui_session, who.cookie)
    services(request).trail.record(who.actor, "ui.signout", "", "ok")
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/ui")
    return response

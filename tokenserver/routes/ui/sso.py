"""Signing in to the web page through the OpenID provider (`sso`).

`/ui/login/sso` sends the browser to the provider with a fresh state, kept in
a cookie of its own as well as in the database (`tokenserver.sso.signin`); the
provider sends it back to `/ui/login/sso/callback`, which signs in only the
browser that started the sign-in (the cookie must carry the state the URL
does), once. Then the person's account is made or brought up to date by the
accounts service, and a web session is opened as the password sign-in opens
one (its last step a page of ours, not a redirect: see `after_sign_in`). What comes back in the URL is anybody's: every value is bounded, and a
refusal is a page saying so with a 4xx (a 503 when the provider cannot be
reached), never the code, the state or a token in a page or a log.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from tokenserver.accounts import AccountError, SSOPerson
from tokenserver.audit import Actor, Outcome
from tokenserver.routes.common import services
from tokenserver.routes.ui.common import local_path, status_of
from tokenserver.routes.ui.login import after_sign_in, landing, login_page
from tokenserver.routes.ui.render import page
from tokenserver.routes.ui.session import PATH
from tokenserver.sso.id_tokens import MAX_SIGN_IN_AGE
from tokenserver.sso.signin import SSO, SignInFailed

__all__ = ["SSO_COOKIE", "router"]

log = logging.getLogger(__name__)

router = APIRouter()

SSO_COOKIE = "ts_sso"
CALLBACK = f"{PATH}/login/sso/callback"
MAX_STATE = 256
MAX_CODE = 2048


def _redirect_uri(request: Request, sso: SSO) -> str:
    return sso.config.redirect_uri or str(request.base_url).rstrip("/") + CALLBACK


def _not_configured(request: Request) -> Response:
    reason = "Signing in through an OpenID provider is not configured here."
    return page(request, "refused.html", 404, reason=reason)


@router.get("/login/sso", include_in_schema=False)
async def start(request: Request) -> Response:
    sso = services(request).sso
    if sso is None:
        return _not_configured(request)
    return_to = local_path(request.query_params.get("return_to")) or ""
    try:
        started = await sso.begin(_redirect_uri(request, sso), return_to)
    except SignInFailed as exc:
        log.warning("sso sign-in not started", extra={"reason": str(exc)})
        return login_page(request, "The OpenID provider cannot be reached; try again later.", 503)
    response = RedirectResponse(started.url, status_code=303)
    # Lax, not Strict: it must come back with the provider's redirect, a cross-site GET.
    response.set_cookie(
        SSO_COOKIE,
        started.state,
        max_age=MAX_SIGN_IN_AGE,
        path=f"{PATH}/login/sso",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/login/sso/callback", include_in_schema=False)
async def callback(request: Request) -> Response:
    svc = services(request)
    sso = svc.sso
    if sso is None:
        return _not_configured(request)
    params = request.query_params
    ip = request.client.host if request.client else ""
    agent = request.headers.get("user-agent", "")[:512]

    def refuse(outcome: Outcome, message: str, status: int, subject: str = "") -> Response:
        svc.trail.record(Actor("", "sso", "user", "", ip, agent), "ui.signin", subject, outcome)
        response = login_page(request, message, status)
        response.delete_cookie(SSO_COOKIE, path=f"{PATH}/login/sso")
        return response

    if "error" in params:
        return refuse("bad_credentials", "The OpenID provider did not sign you in.", 401)
    state, code = params.get("state", ""), params.get("code", "")
    # RFC 9207: a provider that names itself must be ours (no mix-up with another).
    issuer = params.get("iss", sso.config.issuer)
    if not (0 < len(state) <= MAX_STATE and 0 < len(code) <= MAX_CODE) or (
        issuer != sso.config.issuer
    ):
        return refuse("invalid_request", "That is not an answer of the OpenID provider.", 400)
    started_here = request.cookies.get(SSO_COOKIE, "")
    if not started_here or not hmac.compare_digest(started_here.encode(), state.encode()):
        message = "This sign-in was not started in this browser: start again."
        return refuse("invalid_request", message, 400)
    try:
        finished = await sso.finish(state, code, _redirect_uri(request, sso))
    except SignInFailed as exc:
        log.info("sso sign-in refused", extra={"reason": str(exc)})
        message = (
            "The OpenID provider cannot be reached; try again later."
            if exc.status == 503
            else "The OpenID provider's answer signs no one in here: start again."
        )
        return refuse(exc.outcome, message, exc.status)
    person = finished.person
    actor = Actor(person.username[:255], "sso", "user", "database", ip, agent)
    who = SSOPerson(sso.config.issuer, person.subject)
    try:
        identity = await run_in_threadpool(
            svc.accounts.sso_sign_in, actor, who, sso.groups(person), finished.refresh
        )
    except AccountError as exc:
        response = login_page(request, str(exc), status_of(exc))
        response.delete_cookie(SSO_COOKIE, path=f"{PATH}/login/sso")
        return response
    # A sign-in through the provider holds no longer than `recheck`: then it asks again.
    ttl = min(svc.config.ui.session_ttl, sso.config.recheck)
    opened = await run_in_threadpool(
        svc.accounts.open_ui_session, identity, dt.timedelta(seconds=ttl)
    )
    if opened is None:  # the account changed (disabled, say) while this sign-in ran
        return refuse("bad_credentials", "That account does not sign in here.", 403)
    destination = landing(identity, finished.return_to)
    response = after_sign_in(request, opened[0], ttl, destination, from_elsewhere=True)
    response.delete_cookie(SSO_COOKIE, path=f"{PATH}/login/sso")
    return response

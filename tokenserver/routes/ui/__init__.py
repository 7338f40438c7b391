"""The web page under /ui/: server-rendered pages over the same accounts service; the
admin's pages, and every person's own (`me`).

Every change goes through `tokenserver.accounts` (as the admin API's and the
CLI's do) and is audited there; signing in and out are audited here.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from tokenserver.authz.policy import ADMIN_GROUP
from tokenserver.routes.ui import (
    audit,
    ci_tokens,
    device,
    keys,
    login,
    me,
    repositories,
    sessions,
    sso,
    users,
)
from tokenserver.routes.ui.common import ShownAgain
from tokenserver.routes.ui.render import page
from tokenserver.routes.ui.session import PATH, AdminRequired, CSRFRefused, SignInRequired

__all__ = ["install"]


def install(app: FastAPI) -> None:
    router = APIRouter(prefix=PATH)
    for pages in (login, sso, me, users, sessions, ci_tokens, audit, repositories, keys, device):
        router.include_router(pages.router)
    app.include_router(router)
    app.mount(
        f"{PATH}/static",
        StaticFiles(directory=Path(__file__).parent / "static"),
        name="ui-static",
    )

    @app.exception_handler(SignInRequired)
    async def sign_in_first(request: Request, _exc: SignInRequired) -> Response:
        if request.method in ("GET", "HEAD"):
            return RedirectResponse(f"{PATH}/login", status_code=303)
        return page(request, "refused.html", 401, reason="Sign in first: nothing was changed.")

    @app.exception_handler(AdminRequired)
    async def admins_only(request: Request, _exc: AdminRequired) -> Response:
        if request.method in ("GET", "HEAD"):
            return RedirectResponse(f"{PATH}/me", status_code=303)
        reason = f"Only members of the {ADMIN_GROUP} group may do that: nothing was changed."
        return page(request, "refused.html", 403, reason=reason)

    @app.exception_handler(CSRFRefused)
    async def forged(request: Request, _exc: CSRFRefused) -> Response:
        reason = (
            "That form did not come from this page (its CSRF token is wrong): nothing was changed."
        )
        return page(request, "refused.html", 403, reason=reason)

    @app.exception_handler(ShownAgain)
    async def shown_again(_request: Request, exc: ShownAgain) -> Response:
        return exc.response

"""Web sessions: who is signed in to this page, and ending a session (or all of a user's)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from tokenserver.accounts import AccountError, SessionInfo, parse_id
from tokenserver.routes.common import services
from tokenserver.routes.ui.common import act, after_change, base_context, list_page, status_of
from tokenserver.routes.ui.render import page
from tokenserver.routes.ui.session import SESSION_COOKIE, SignedIn, posted

__all__ = ["router"]

router = APIRouter()


async def _list(
    request: Request, who: SignedIn, error: str | None = None, status: int = 200
) -> Response:
    user = request.query_params.get("user", "")[:255]
    sessions: list[SessionInfo] = []
    try:
        accounts = services(request).accounts
        sessions = await run_in_threadpool(accounts.list_ui_sessions, user or None)
    except AccountError as exc:  # a name no account could have
        if error is None:
            error, status = str(exc), status_of(exc)
    context = base_context(request, who, error) | {"current": who.session.id}
    return page(request, "sessions.html", status, sessions=sessions, user=user, **context)


async def _after_end(request: Request, who: SignedIn, done: str, name: str = "") -> Response:
    # Ending one's own session (or all of one's own) signs out: off to the sign-in page.
    if await run_in_threadpool(services(request).accounts.ui_session, who.cookie) is None:
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/ui")
        return response
    return after_change("/ui/sessions", done, name)


list_page(router, "/sessions", _list)


@router.post("/sessions/end", include_in_schema=False)
async def end_user_sessions(request: Request) -> Response:
    who, form = await posted(request)
    user = form.one("user") or ""
    await act(request, who, _list, services(request).accounts.end_ui_sessions, user)
    return await _after_end(request, who, "sessions-ended", user)


@router.post("/sessions/{session_id}/end", include_in_schema=False)
async def end_session(request: Request, session_id: str) -> Response:
    who, _form = await posted(request)
    accounts = services(request).accounts
    # The id is read within the act: one no row could have is refused as any bad value is.
    await act(
        request,
        who,
        _list,
        lambda actor: accounts.end_ui_session(actor, parse_id(session_id, "web session")),
    )
    return await _after_end(request, who, "session-ended")

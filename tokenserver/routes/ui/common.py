"""What every page handler shares: the after-a-change redirect, the page context, refusals.

A change is one act of the accounts service (which checks and audits it),
run off the event loop as whoever posted the form. A refused one answers
with the page it came from, shown again with why and the status that says
so: `act` raises `ShownAgain`, whose handler (see `install`) sends it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from authcore.duration import DurationError, parse_seconds
from tokenserver.accounts import (
    AccountError,
    InvalidValue,
    NameTaken,
    SignInRefused,
    UnknownAccount,
)
from tokenserver.audit import Actor
from tokenserver.forms import Params
from tokenserver.routes.common import services
from tokenserver.routes.ui.session import PATH, SignedIn, admin_signed_in

__all__ = [
    "DONE",
    "Again",
    "ShownAgain",
    "act",
    "after_change",
    "base_context",
    "lifetime",
    "list_page",
    "local_path",
    "registry_host",
    "status_of",
]

P = ParamSpec("P")
T = TypeVar("T")

# A page shown again after a change it offers was refused: with the error and its status.
Again = Callable[[Request, SignedIn, str, int], Awaitable[Response]]

# What a redirect after a change may say: fixed texts, so a link cannot make the page say more.
DONE = {
    "user-created": "User {name} created.",
    "user-changed": "User {name} changed.",
    "user-deleted": "User {name} deleted.",
    "password-set": "Password of {name} set; its refresh tokens and web sessions are ended.",
    "session-ended": "Web session ended.",
    "sessions-ended": "Web sessions of {name} ended.",
    "token-revoked": "Refresh token revoked.",
    "ci-revoked": "CI token {name} revoked.",
    "pat-revoked": "Personal token {name} revoked.",
}


def after_change(path: str, done: str, name: str = "") -> Response:
    query = urlencode({"done": done, "name": name} if name else {"done": done})
    return RedirectResponse(f"{path}?{query}", status_code=303)


def local_path(value: str | None) -> str | None:
    """`value` if it is a page of this site to go back to after signing in; else None.

    Only `/ui/...` paths: no scheme, host or `//` (another site), no backslash
    (which browsers read as a slash), no `..`, nothing but printable ASCII, and
    not the sign-in pages themselves.
    """
    if (
        value
        and len(value) <= 255
        and value.startswith(f"{PATH}/")
        and value.isascii()
        and value.isprintable()
        and " " not in value
        and "//" not in value
        and "\\" not in value
        and ".." not in value
        and not value.startswith(f"{PATH}/login")
    ):
        return value
    return None


def list_page(
    router: APIRouter, path: str, render: Callable[[Request, SignedIn], Awaitable[Response]]
) -> None:
    """Serves GET `path`: the page `render` makes for the admin signed in."""

    async def show(request: Request) -> Response:
        return await render(request, await admin_signed_in(request))

    router.get(path, include_in_schema=False)(show)


class ShownAgain(Exception):
    """A change was refused: `response` is its page, shown again with why."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


async def act(
    request: Request,
    who: SignedIn,
    again: Again,
    change: Callable[Concatenate[Actor, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """What `change(who.actor, *args)` answers, run in the thread pool; if the accounts
    service refuses it, `ShownAgain` with the page `again` shows for the refusal."""
    try:
        return await run_in_threadpool(change, who.actor, *args, **kwargs)
    except AccountError as exc:
        raise ShownAgain(await again(request, who, str(exc), status_of(exc))) from None


def lifetime(form: Params) -> int:
    """A token's lifetime as posted (`ttl`, 30 days if none), in seconds; call it within
    the act, so that a bad one is refused as any bad value is."""
    try:
        return parse_seconds(form.one("ttl") or "30d")
    except DurationError as exc:
        raise InvalidValue(str(exc)) from None


def registry_host(request: Request) -> str:
    """The registry as `docker login` names it, for the line a created token's page shows."""
    url = services(request).config.ui.registry_url
    return url.split("://", 1)[1].rstrip("/") if url else "REGISTRY"


def base_context(request: Request, who: SignedIn, error: str | None = None) -> dict[str, Any]:
    """What every page shows: who is signed in, its forms' CSRF token, what the last change
    did (`done`) and `error`, why a change was refused."""
    done = DONE.get(request.query_params.get("done", ""))
    name = request.query_params.get("name", "")[:255]
    return {
        "subject": who.actor.subject,
        "is_admin": who.is_admin,
        "csrf": who.session.csrf,
        "message": done.format(name=name) if done else None,
        "error": error,
    }


def status_of(exc: AccountError) -> int:
    if isinstance(exc, UnknownAccount):
        return 404
    if isinstance(exc, NameTaken):
        return 409
    if isinstance(exc, InvalidValue):
        return 400
    if isinstance(exc, SignInRefused):
        return 403
    return 503

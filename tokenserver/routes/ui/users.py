"""Users: list, search, create; one user's groups, password, state, refresh and personal
tokens."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from tokenserver.accounts import AccountError, parse_id
from tokenserver.routes.common import services
from tokenserver.routes.ui.common import act, after_change, base_context, list_page, status_of
from tokenserver.routes.ui.render import page
from tokenserver.routes.ui.session import SignedIn, admin_signed_in, posted
from tokenserver.token_views import PersonalTokenView

__all__ = ["router"]

router = APIRouter()


def _others(request: Request) -> list[dict[str, object]]:
    """Accounts of other backends the audit trail has seen log in (read-only here)."""
    reader = services(request).audit_reader
    return [vars(seen) for seen in reader.seen_accounts(("htpasswd", "ldap"), limit=200)]


async def _list(
    request: Request, who: SignedIn, error: str | None = None, status: int = 200
) -> Response:
    q = request.query_params.get("q", "")[:255]
    users = await run_in_threadpool(services(request).accounts.list_users)
    if q:
        users = [u for u in users if q.casefold() in u.name.casefold()]
    others = await run_in_threadpool(_others, request)
    context = base_context(request, who, error)
    return page(request, "users.html", status, users=users, others=others, q=q, **context)


list_page(router, "/users", _list)


@router.post("/users", include_in_schema=False)
async def create_user(request: Request) -> Response:
    who, form = await posted(request)
    name, password = form.one("name") or "", form.one("password") or ""
    groups = (form.one("groups") or "").split()
    await act(request, who, _list, services(request).accounts.create_user, name, password, groups)
    return after_change("/ui/users", "user-created", name)


async def _detail(
    request: Request, who: SignedIn, error: str | None = None, status: int = 200, *, name: str
) -> Response:
    try:
        user = await run_in_threadpool(services(request).accounts.get_user, name)
    except AccountError as exc:
        return await _list(request, who, str(exc), status_of(exc))
    accounts, now = services(request).accounts, services(request).clock()
    tokens = await run_in_threadpool(accounts.list_refresh_tokens, name)
    personal = await run_in_threadpool(accounts.list_personal_tokens, name)
    context = base_context(request, who, error) | {
        "personal_tokens": [PersonalTokenView.of(info, now) for info in personal]
    }
    return page(request, "user.html", status, user=user, refresh_tokens=tokens, **context)


@router.get("/users/{name}", include_in_schema=False)
async def show_user(request: Request, name: str) -> Response:
    return await _detail(request, await admin_signed_in(request), name=name)


@router.post("/users/{name}/{change}", include_in_schema=False)
async def change_user(request: Request, name: str, change: str) -> Response:
    who, form = await posted(request)
    accounts, again = services(request).accounts, partial(_detail, name=name)
    if change == "delete":
        await act(request, who, again, accounts.delete_user, name)
        return after_change("/ui/users", "user-deleted", name)
    if change == "groups":
        groups = (form.one("groups") or "").split()
        await act(request, who, again, accounts.set_groups, name, groups)
        done = "user-changed"
    elif change == "password":
        await act(request, who, again, accounts.set_password, name, form.one("password") or "")
        done = "password-set"
    elif change == "disabled":
        await act(request, who, again, accounts.set_disabled, name, form.one("disabled") == "true")
        done = "user-changed"
    else:
        return await _detail(request, who, f"no such change: {change[:40]}", 404, name=name)
    return after_change(f"/ui/users/{name}", done, name)


@router.post("/users/{name}/personal-tokens/{token}/revoke", include_in_schema=False)
async def revoke_personal_token(request: Request, name: str, token: str) -> Response:
    who, _form = await posted(request)
    revoke = services(request).accounts.revoke_personal_token
    await act(request, who, partial(_detail, name=name), revoke, name, token)
    return after_change(f"/ui/users/{name}", "pat-revoked", token)


@router.post("/refresh-tokens/{token_id}/revoke", include_in_schema=False)
async def revoke_refresh_token(request: Request, token_id: str) -> Response:
    who, _form = await posted(request)
    user = request.query_params.get("user", "")[:255]
    accounts = services(request).accounts
    # The id is read within the act: one no row could have is refused as any bad value is.
    await act(
        request,
        who,
        partial(_detail, name=user),
        lambda actor: accounts.revoke_refresh_token(actor, parse_id(token_id, "refresh token")),
    )
    return after_change(f"/ui/users/{user}", "token-revoked")

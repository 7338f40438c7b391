"""Users: list, search, create; one user's groups, password, state, refresh tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from tokenserver.accounts import AccountError, parse_id
from tokenserver.routes.common import services
from tokenserver.routes.ui.common import after_change, base_context, list_page, status_of
from tokenserver.routes.ui.render import page
from tokenserver.routes.ui.session import SignedIn, posted, signed_in

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
    context = base_context(request, who) | {"error": error}
    return page(request, "users.html", status, users=users, others=others, q=q, **context)


list_page(router, "/users", _list)


@router.post("/users", include_in_schema=False)
async def create_user(request: Request) -> Response:
    who, form = await posted(request)
    name = form.one("name") or ""
    try:
        await run_in_threadpool(
            services(request).accounts.create_user,
            who.actor,
            name,
            form.one("password") or "",
            (form.one("groups") or "").split(),
        )
    except AccountError as exc:
        return await _list(request, who, str(exc), status_of(exc))
    return after_change("/ui/users", "user-created", name)


async def _detail(
    request: Request, who: SignedIn, name: str, error: str | None = None, status: int = 200
) -> Response:
    try:
        user = await run_in_threadpool(services(request).accounts.get_user, name)
    except AccountError as exc:
        return await _list(request, who, str(exc), status_of(exc))
    tokens = await run_in_threadpool(services(request).accounts.list_refresh_tokens, name)
    context = base_context(request, who) | {"error": error}
    return page(request, "user.html", status, user=user, refresh_tokens=tokens, **context)


@router.get("/users/{name}", include_in_schema=False)
async def show_user(request: Request, name: str) -> Response:
    return await _detail(request, await signed_in(request), name)


@router.post("/users/{name}/{change}", include_in_schema=False)
async def change_user(request: Request, name: str, change: str) -> Response:
    who, form = await posted(request)
    service = services(request).accounts
    try:
        if change == "groups":
            groups = (form.one("groups") or "").split()
            await run_in_threadpool(service.set_groups, who.actor, name, groups)
            done = "user-changed"
        elif change == "password":
            password = form.one("password") or ""
            await run_in_threadpool(service.set_password, who.actor, name, password)
            done = "password-set"
        elif change == "disabled":
            disabled = form.one("disabled") == "true"
            await run_in_threadpool(service.set_disabled, who.actor, name, disabled)
            done = "user-changed"
        elif change == "delete":
            await run_in_threadpool(service.delete_user, who.actor, name)
            return after_change("/ui/users", "user-deleted", name)
        else:
            return await _detail(request, who, name, f"no such change: {change[:40]}", 404)
    except AccountError as exc:
        return await _detail(request, who, name, str(exc), status_of(exc))
    return after_change(f"/ui/users/{name}", done, name)


@router.post("/refresh-tokens/{token_id}/revoke", include_in_schema=False)
async def revoke_refresh_token(request: Request, token_id: str) -> Response:
    who, _form = await posted(request)
    user = request.query_params.get("user", "")[:255]
    try:
        number = parse_id(token_id, "refresh token")
        accounts = services(request).accounts
        await run_in_threadpool(accounts.revoke_refresh_token, who.actor, number)
    except AccountError as exc:
        return await _detail(request, who, user, str(exc), status_of(exc))
    return after_change(f"/ui/users/{user}", "token-revoked")

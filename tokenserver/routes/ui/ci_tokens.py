"""CI tokens: list, create (the secret shown once), revoke."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from tokenserver.routes.common import services
from tokenserver.routes.ui.common import (
    act,
    after_change,
    base_context,
    lifetime,
    list_page,
    registry_host,
)
from tokenserver.routes.ui.render import page
from tokenserver.routes.ui.session import SignedIn, posted
from tokenserver.token_views import CITokenView

__all__ = ["router"]

router = APIRouter()


async def _list(
    request: Request,
    who: SignedIn,
    error: str | None = None,
    status: int = 200,
    *,
    created: dict[str, str] | None = None,
) -> Response:
    now = services(request).clock()
    tokens = [
        CITokenView.of(info, now)
        for info in await run_in_threadpool(services(request).accounts.list_ci_tokens)
    ]
    context = base_context(request, who, error) | {"registry_host": registry_host(request)}
    return page(request, "ci_tokens.html", status, tokens=tokens, created=created, **context)


@router.post("/ci-tokens", include_in_schema=False)
async def create_ci_token(request: Request) -> Response:
    who, form = await posted(request)
    name, description = form.one("name") or "", form.one("description") or ""
    scopes = (form.one("scopes") or "").split()
    create = services(request).accounts.create_ci_token
    # The lifetime is read within the act: a bad one is refused as any bad value is.
    _info, secret = await act(
        request, who, _list, lambda actor: create(actor, name, scopes, lifetime(form), description)
    )
    # Rendered, not redirected: the secret must never be in a URL or shown twice.
    return await _list(request, who, created={"name": name, "secret": secret}, status=201)


@router.post("/ci-tokens/{name}/revoke", include_in_schema=False)
async def revoke_ci_token(request: Request, name: str) -> Response:
    who, _form = await posted(request)
    await act(request, who, _list, services(request).accounts.revoke_ci_token, name)
    return after_change("/ui/ci-tokens", "ci-revoked", name)


list_page(router, "/ci-tokens", _list)

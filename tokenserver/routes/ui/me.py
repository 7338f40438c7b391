"""A person's own page: who they are, what the rules grant them, their personal tokens.

Any person signed in has it, admins too. What the rules grant is explained
by the policy the token endpoint follows, asked as this person now (their
groups as their backend gives them); their tokens are made, listed and
revoked through the same accounts service as the CLI's and the admin API's,
always for the person signed in and no one else.
"""

from __future__ import annotations

from typing import NamedTuple

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from authcore.scope import Access, ScopeError, parse_scopes
from tokenserver.accounts import PersonalTokenInfo
from tokenserver.audit import Actor
from tokenserver.authz.policy import Decision, Requester
from tokenserver.routes.common import services
from tokenserver.routes.ui.common import (
    act,
    after_change,
    base_context,
    lifetime,
    registry_host,
)
from tokenserver.routes.ui.render import page
from tokenserver.routes.ui.session import SignedIn, posted, signed_in
from tokenserver.token_views import PersonalTokenView

__all__ = ["router"]

router = APIRouter()

PATH = "/ui/me"
# What the page explains unasked, besides what the person asks about.
MAX_ASKED = 10
MAX_ASKED_CHARS = 2048


def _asked(request: Request, subject: str) -> tuple[list[Access], str | None]:
    """The scopes to explain: those in `?scope=` (space-separated), else two examples."""
    text = request.query_params.get("scope", "")
    if not text:
        examples = []
        for example in (f"repository:{subject}/app:pull,push", "registry:catalog:*"):
            try:
                examples += parse_scopes([example])
            except ScopeError:
                continue  # a name no repository path can hold
        return examples, None
    values = text.split()
    if len(text) > MAX_ASKED_CHARS or len(values) > MAX_ASKED:
        return [], f"Ask about at most {MAX_ASKED} scopes at once."
    try:
        return parse_scopes(values), None
    except ScopeError as exc:
        return [], f"That is not a scope: {str(exc)[:200]}"


def _explain(request: Request, who: SignedIn, asked: list[Access]) -> list[Decision]:
    svc = services(request)
    ip = request.client.host if request.client else None
    requester = Requester(who.identity, svc.config.token.services[0], ip)
    return svc.policy.explain(requester, asked)


class _Created(NamedTuple):
    """A token just made: its name, and its secret, shown in this answer only."""

    name: str
    secret: str


async def _show(
    request: Request,
    who: SignedIn,
    error: str | None = None,
    status: int = 200,
    created: _Created | None = None,
) -> Response:
    svc = services(request)
    asked, asked_error = _asked(request, who.identity.subject)
    decisions = await run_in_threadpool(_explain, request, who, asked)
    now = svc.clock()
    listed = await run_in_threadpool(svc.accounts.list_personal_tokens, who.identity.subject)
    context = base_context(request, who, error or asked_error)
    return page(
        request,
        "me.html",
        400 if asked_error and status == 200 else status,
        groups=sorted(who.identity.groups),
        backend=who.identity.backend,
        decisions=decisions,
        asked=request.query_params.get("scope", "")[:MAX_ASKED_CHARS],
        tokens=[PersonalTokenView.of(info, now) for info in listed],
        created=created,
        registry_host=registry_host(request),
        max_ttl=svc.config.personal_tokens.max_ttl,
        **context,
    )


@router.get("/me", include_in_schema=False)
async def me(request: Request) -> Response:
    return await _show(request, await signed_in(request))


@router.post("/me/tokens", include_in_schema=False)
async def create_token(request: Request) -> Response:
    who, form = await posted(request, anyone=True)
    name, scopes = form.one("name") or "", (form.one("scopes") or "").split()
    create = services(request).accounts.create_personal_token
    owner = who.identity.subject

    def change(actor: Actor) -> tuple[PersonalTokenInfo, str]:
        return create(actor, owner, name, scopes, lifetime(form))

    _info, secret = await act(request, who, _show, change)
    # Rendered, not redirected: the secret must never be in a URL or shown twice.
    return await _show(request, who, None, 201, _Created(name, secret))


@router.post("/me/tokens/{name}/revoke", include_in_schema=False)
async def revoke_token(request: Request, name: str) -> Response:
    who, _form = await posted(request, anyone=True)
    revoke = services(request).accounts.revoke_personal_token
    await act(request, who, _show, revoke, who.identity.subject, name)
    return after_change(PATH, "pat-revoked", name)

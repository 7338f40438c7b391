"""The device page: a signed-in person sees which client asks to log in as them, from
which address and when, and approves or denies it (RFC 8628 §3.3).

`/device` (what the device shows) leads here. Someone not signed in goes to
the sign-in page and comes back with the code. Looking a code up and
deciding both go through `device.DeviceLogins`, which throttles guesses.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from tokenserver.device import MAX_TYPED, DeviceError, DeviceRequest
from tokenserver.errors import from_account_error
from tokenserver.routes.common import services
from tokenserver.routes.ui.common import base_context
from tokenserver.routes.ui.render import page
from tokenserver.routes.ui.session import SignedIn, SignInRequired, posted, signed_in

__all__ = ["router"]

router = APIRouter()

_DECISIONS = {"approve": True, "deny": False}


def _show(
    request: Request,
    who: SignedIn,
    typed: str = "",
    *,
    found: DeviceRequest | None = None,
    decided: str | None = None,
    error: DeviceError | str | None = None,
) -> Response:
    status, headers = 200, {}
    if isinstance(error, DeviceError):
        answer = from_account_error(error)
        status, headers = answer.status, answer.headers()
    elif error is not None:
        status = 400
    context = base_context(request, who, None if error is None else str(error))
    response = page(
        request, "device.html", status, user_code=typed, found=found, decided=decided, **context
    )
    response.headers.update(headers)
    return response


@router.get("/device", include_in_schema=False)
async def device_page(request: Request) -> Response:
    typed = request.query_params.get("user_code", "")[:MAX_TYPED]
    try:
        who = await signed_in(request)
    except SignInRequired:
        back = request.url.path + (f"?{urlencode({'user_code': typed})}" if typed else "")
        return RedirectResponse(f"/ui/login?{urlencode({'return_to': back})}", status_code=303)
    if not typed:
        return _show(request, who)
    ip = who.actor.client_ip or None
    try:
        found = await run_in_threadpool(services(request).devices.lookup, who.session.id, ip, typed)
    except DeviceError as exc:
        return _show(request, who, typed, error=exc)
    return _show(request, who, typed, found=found)


@router.post("/device", include_in_schema=False)
async def decide(request: Request) -> Response:
    who, form = await posted(request)
    typed = (form.one("user_code") or "")[:MAX_TYPED]
    approve = _DECISIONS.get(form.one("decision") or "")
    if approve is None:
        return _show(request, who, typed, error="Approve or deny: nothing was decided.")
    devices = services(request).devices
    try:
        found = await run_in_threadpool(
            lambda: devices.decide(who.actor, who.identity, who.session.id, typed, approve=approve)
        )
    except DeviceError as exc:
        return _show(request, who, typed, error=exc)
    return _show(request, who, found=found, decided="approved" if approve else "denied")

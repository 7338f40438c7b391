"""RFC 8628 at the device's end: POST /device/code, and /device, where it sends its person.

The page itself is the web page's (`routes/ui/device.py`), under /ui where
its session cookie lives; /device only leads there. The verification URI is
this server's own address as the request reached it (behind a proxy, its
Host and, from a trusted proxy, its scheme).
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from tokenserver.device import MAX_TYPED, DeviceError
from tokenserver.errors import from_account_error
from tokenserver.routes.common import read_form, services

__all__ = ["PAGE", "VERIFICATION_PATH", "router"]

router = APIRouter()

VERIFICATION_PATH = "/device"
PAGE = "/ui/device"


@router.post(
    "/device/code",
    summary="Device authorization (RFC 8628): codes for a device whose person approves it",
)
async def device_code(request: Request) -> JSONResponse:
    form = await read_form(request)
    client_id = form.required("client_id")
    service = form.one("service") or None
    ip = request.client.host if request.client else ""
    agent = request.headers.get("user-agent", "")
    svc = services(request)
    try:
        issued = await run_in_threadpool(
            svc.devices.start, client_id, form.all("scope"), service, ip, agent
        )
    except DeviceError as exc:
        raise from_account_error(exc) from None
    uri = str(request.base_url).rstrip("/") + VERIFICATION_PATH
    answer = {
        "device_code": issued.device_code,
        "user_code": issued.user_code,
        "verification_uri": uri,
        "verification_uri_complete": f"{uri}?{urlencode({'user_code': issued.user_code})}",
        "expires_in": svc.config.device.code_ttl,
        "interval": issued.interval,
    }
    return JSONResponse(answer, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@router.get(VERIFICATION_PATH, include_in_schema=False)
async def verification(request: Request) -> Response:
    """The page, with the code the link carries (cut short: it is a code or nothing)."""
    typed = request.query_params.get("user_code", "")[:MAX_TYPED]
    query = f"?{urlencode({'user_code': typed})}" if typed else ""
    return RedirectResponse(PAGE + query, status_code=303)

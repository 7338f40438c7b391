"""The audit trail: newest first, filtered by subject, outcome, action and time, in pages."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from authcore.duration import DurationError, parse_seconds
from tokenserver.audit import OUTCOMES
from tokenserver.routes.common import services
from tokenserver.routes.ui.common import base_context
from tokenserver.routes.ui.render import page
from tokenserver.routes.ui.session import admin_signed_in

__all__ = ["router"]

router = APIRouter()

PAGE = 50
MAX_PAGES = 1000


@router.get("/audit", include_in_schema=False)
async def audit(request: Request) -> Response:
    who = await admin_signed_in(request)
    svc = services(request)
    params = request.query_params
    filters = {key: params.get(key, "")[:255] for key in ("subject", "action", "outcome", "since")}
    page_number = (
        int(n) if (n := params.get("page", "1")).isascii() and n.isdigit() and len(n) < 5 else 1
    )
    page_number = min(max(page_number, 1), MAX_PAGES)
    error = None
    since = None
    if filters["since"]:
        try:
            since = svc.clock() - dt.timedelta(seconds=parse_seconds(filters["since"]))
        except DurationError as exc:
            error = str(exc)
    outcome = filters["outcome"] if filters["outcome"] in OUTCOMES else None
    await run_in_threadpool(svc.audit.flush, 2.0)
    rows = await run_in_threadpool(
        lambda: svc.audit_reader.query(
            subject=filters["subject"] or None,
            outcome=outcome,
            action=filters["action"] or None,
            since=since,
            limit=PAGE + 1,
            offset=(page_number - 1) * PAGE,
        )
    )

    def page_link(number: int) -> str:
        return "/ui/audit?" + urlencode({**{k: v for k, v in filters.items() if v}, "page": number})

    return page(
        request,
        "audit.html",
        400 if error else 200,
        filters=filters,
        outcomes=OUTCOMES,
        rows=rows[:PAGE],
        more=len(rows) > PAGE,
        page=page_number,
        page_link=page_link,
        **base_context(request, who, error),
    )

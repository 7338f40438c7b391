"""/admin/v1/audit: token requests and administrative acts, newest first."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request

from tokenserver.audit import AuditRecord, Outcome
from tokenserver.errors import InvalidRequest
from tokenserver.routes.admin.auth import Admin, AdminRoute
from tokenserver.routes.admin.common import ERROR_RESPONSES, NameFilter
from tokenserver.routes.common import services

__all__ = ["router"]

router = APIRouter(route_class=AdminRoute, responses=ERROR_RESPONSES)


def _utc(name: str, value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise InvalidRequest(f"{name} needs a time zone (e.g. 2026-01-01T00:00:00Z)")
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise InvalidRequest(f"{name} is out of range") from None


@router.get("/audit", name="audit.read", summary="The audit trail, newest first")
def audit(
    request: Request,
    _admin: Admin,
    subject: NameFilter = None,
    outcome: Annotated[Outcome | None, Query()] = None,
    action: Annotated[
        str | None,
        Query(max_length=64, pattern=r"^[a-z_.]+$", description="token, user.create, ..."),
    ] = None,
    since: Annotated[dt.datetime | None, Query()] = None,
    until: Annotated[dt.datetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditRecord]:
    since, until = _utc("since", since), _utc("until", until)
    svc = services(request)
    svc.audit.flush(2.0)
    return svc.audit_reader.query(
        subject=subject, outcome=outcome, action=action, since=since, until=until, limit=limit
    )

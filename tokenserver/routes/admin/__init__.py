"""The admin API under /admin/v1, one module per resource; see `auth` for who gets in.

Endpoints are plain functions, so that FastAPI runs them in its thread pool:
every one waits on the database.
"""

from __future__ import annotations

from fastapi import APIRouter

from tokenserver.routes.admin import (
    audit,
    ci_tokens,
    personal_tokens,
    refresh_tokens,
    trusts,
    ui_sessions,
    users,
)
from tokenserver.routes.admin.auth import ADMIN_SCOPE, REALM

__all__ = ["ADMIN_SCOPE", "PREFIX", "REALM", "router"]

PREFIX = "/admin/v1"

router = APIRouter(prefix=PREFIX, tags=["admin"])
for resource in (users, ci_tokens, personal_tokens, refresh_tokens, ui_sessions, trusts, audit):
    router.include_router(resource.router)

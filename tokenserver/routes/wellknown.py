"""JWKS and health."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tokenserver.routes.common import services

__all__ = ["router"]

router = APIRouter()


@router.get("/.well-known/jwks.json", summary="Public keys that verify our tokens")
async def jwks(request: Request) -> JSONResponse:
    jwks = services(request).jwks
    return JSONResponse(jwks, headers={"Cache-Control": "public, max-age=300"})


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}

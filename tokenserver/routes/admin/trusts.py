"""/admin/v1/federation-trusts: the OIDC issuers whose ID tokens log pipelines in."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import Field

from tokenserver.config import TrustConfig
from tokenserver.federation.trusts import TrustSpec
from tokenserver.routes.admin.auth import Admin, AdminRoute
from tokenserver.routes.admin.common import ERROR_RESPONSES, StrictBody, answers_nothing
from tokenserver.routes.common import services

__all__ = ["router"]

router = APIRouter(route_class=AdminRoute, responses=ERROR_RESPONSES)

Text = Annotated[str, Field(min_length=1, max_length=1024)]


class TrustIn(StrictBody):
    name: str = Field(
        min_length=1, max_length=255, description="the username pipelines log in with"
    )
    issuer: Text = Field(description="the ID tokens' `iss`, an https:// URL")
    audience: Text = Field(description="the `aud` the tokens must carry")
    scopes: list[Text] = Field(min_length=1, max_length=100, description="what it may be granted")
    claims: dict[str, Text] = Field(
        default_factory=dict, max_length=32, description="claim -> glob or /regex/, all must match"
    )
    jwks_uri: Text | None = Field(default=None, description="else found by discovery")
    jwks_file: Text | None = Field(default=None, description="a local JWKS, for air-gapped issuers")
    ca_file: Text | None = Field(default=None, description="PEM CAs for the issuer's HTTPS")
    max_age: int = Field(default=3600, ge=60, le=86400, description="the oldest `iat` accepted, s")

    def spec(self) -> TrustSpec:
        return TrustSpec(
            **self.model_dump(exclude={"jwks_file", "ca_file"}),
            jwks_file=_path(self.jwks_file),
            ca_file=_path(self.ca_file),
        )


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


class TrustOut(TrustConfig):
    """A trust as configured, and where it is kept."""

    source: str = Field(description="config (read-only here) or database")


def _out(spec: TrustSpec, source: str) -> TrustOut:
    return TrustOut(**spec.fields(), source=source)


@router.get("/federation-trusts", name="trust.list", summary="List federation trusts")
def list_trusts(request: Request, _admin: Admin) -> list[TrustOut]:
    return [_out(spec, source) for spec, source in services(request).accounts.list_trusts()]


@router.post(
    "/federation-trusts", status_code=201, name="trust.create", summary="Add a federation trust"
)
def create_trust(request: Request, body: TrustIn, admin: Admin) -> TrustOut:
    return _out(services(request).accounts.create_trust(admin, body.spec()), "database")


@answers_nothing(
    router.delete, "/federation-trusts/{name}", "trust.delete", "Remove a federation trust"
)
def delete_trust(request: Request, name: str, admin: Admin) -> None:
    services(request).accounts.delete_trust(admin, name)

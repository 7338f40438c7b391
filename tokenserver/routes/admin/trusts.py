"""/admin/v1/federation-trusts: the OIDC issuers whose ID tokens log pipelines in."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

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
            name=self.name,
            issuer=self.issuer,
            audience=self.audience,
            scopes=self.scopes,
            claims=self.claims,
            jwks_uri=self.jwks_uri,
            jwks_file=Path(self.jwks_file) if self.jwks_file else None,
            ca_file=Path(self.ca_file) if self.ca_file else None,
            max_age=self.max_age,
        )


class TrustOut(BaseModel):
    name: str
    issuer: str
    audience: str
    scopes: list[str]
    claims: dict[str, str]
    jwks_uri: str | None
    jwks_file: str | None
    ca_file: str | None
    max_age: int
    source: str = Field(description="config (read-only here) or database")


def _out(spec: TrustSpec, source: str) -> TrustOut:
    return TrustOut(
        name=spec.name,
        issuer=spec.issuer,
        audience=spec.audience,
        scopes=list(spec.scopes),
        claims=dict(spec.claims),
        jwks_uri=spec.jwks_uri,
        jwks_file=str(spec.jwks_file) if spec.jwks_file else None,
        ca_file=str(spec.ca_file) if spec.ca_file else None,
        max_age=spec.max_age,
        source=source,
    )


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

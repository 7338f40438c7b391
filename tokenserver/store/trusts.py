"""Federation trusts added at run time (the configuration's own are never stored here)."""

from __future__ import annotations

import builtins
import datetime as dt
import json
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from tokenserver.federation.spec import TrustSpec
from tokenserver.names import name_key
from tokenserver.store.db import Database
from tokenserver.store.models import FederationTrust

__all__ = ["TrustExists", "TrustStore"]


class TrustExists(Exception):
    pass


def _spec(row: FederationTrust) -> TrustSpec:
    return TrustSpec(
        name=row.name,
        issuer=row.issuer,
        audience=row.audience,
        scopes=row.scopes.split(),
        claims=json.loads(row.claims),
        jwks_uri=row.jwks_uri,
        jwks_file=Path(row.jwks_file) if row.jwks_file else None,
        ca_file=Path(row.ca_file) if row.ca_file else None,
        max_age=row.max_age,
    )


class TrustStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, name: str) -> TrustSpec | None:
        with self._db.session() as s:
            row = s.scalar(select(FederationTrust).where(FederationTrust.name == name))
            return None if row is None else _spec(row)

    def list(self) -> list[TrustSpec]:
        with self._db.session() as s:
            rows = s.scalars(select(FederationTrust).order_by(FederationTrust.name))
            return [_spec(r) for r in rows]

    def exists_like(self, name: str) -> bool:
        """Whether a trust goes by any spelling of `name`."""
        with self._db.session() as s:
            found = s.scalar(
                select(FederationTrust.id).where(FederationTrust.name_key == name_key(name))
            )
            return found is not None

    def names_for_issuer(self, issuer: str) -> builtins.list[str]:
        """`issuer` without a trailing slash; rows may have one (as typed)."""
        with self._db.session() as s:
            rows = s.scalars(
                select(FederationTrust.name).where(
                    FederationTrust.issuer.in_((issuer, issuer + "/"))
                )
            )
            return list(rows)

    def add(self, spec: TrustSpec, now: dt.datetime, created_by: str) -> None:
        """Raises TrustExists when any spelling of the name is taken (the database decides)."""
        row = FederationTrust(
            name=spec.name,
            name_key=name_key(spec.name),
            issuer=spec.issuer,
            audience=spec.audience,
            scopes=" ".join(spec.scopes),
            claims=json.dumps(dict(spec.claims), sort_keys=True),
            jwks_uri=spec.jwks_uri,
            jwks_file=str(spec.jwks_file) if spec.jwks_file else None,
            ca_file=str(spec.ca_file) if spec.ca_file else None,
            max_age=spec.max_age,
            created_at=now,
            created_by=created_by,
        )
        try:
            with self._db.session() as s:
                s.add(row)
        except IntegrityError:
            raise TrustExists(spec.name) from None

    def delete(self, name: str) -> bool:
        return bool(self._db.change(delete(FederationTrust).where(FederationTrust.name == name)))

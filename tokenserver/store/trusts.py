"""Federation trusts added at run time (the configuration's own are never stored here).

The store holds a trust as plain values: what they mean, and whether they
are right, is `tokenserver.federation`'s to say (it checks them before they
are added and each time they are used).
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
from pathlib import Path
from typing import TypedDict

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from tokenserver.names import name_key
from tokenserver.store.models import FederationTrust
from tokenserver.store.table import TableStore

__all__ = ["TrustExists", "TrustFields", "TrustStore"]


class TrustExists(Exception):
    pass


class TrustFields(TypedDict):
    """A trust's values (`federation.trusts.TrustSpec`'s fields), unchecked."""

    name: str
    issuer: str
    audience: str
    scopes: list[str]
    claims: dict[str, str]
    jwks_uri: str | None
    jwks_file: Path | None
    ca_file: Path | None
    max_age: int


def _fields(row: FederationTrust) -> TrustFields:
    return TrustFields(
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


class TrustStore(TableStore):
    def get(self, name: str) -> TrustFields | None:
        with self._db.session() as s:
            row = s.scalar(select(FederationTrust).where(FederationTrust.name == name))
            return None if row is None else _fields(row)

    def list(self) -> list[TrustFields]:
        with self._db.session() as s:
            rows = s.scalars(select(FederationTrust).order_by(FederationTrust.name))
            return [_fields(r) for r in rows]

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

    def add(self, trust: TrustFields, now: dt.datetime, created_by: str) -> None:
        """Raises TrustExists when any spelling of the name is taken (the database decides)."""
        row = FederationTrust(
            name=trust["name"],
            name_key=name_key(trust["name"]),
            issuer=trust["issuer"],
            audience=trust["audience"],
            scopes=" ".join(trust["scopes"]),
            claims=json.dumps(dict(trust["claims"]), sort_keys=True),
            jwks_uri=trust["jwks_uri"],
            jwks_file=str(trust["jwks_file"]) if trust["jwks_file"] else None,
            ca_file=str(trust["ca_file"]) if trust["ca_file"] else None,
            max_age=trust["max_age"],
            created_at=now,
            created_by=created_by,
        )
        try:
            with self._db.session() as s:
                s.add(row)
        except IntegrityError:
            raise TrustExists(trust["name"]) from None

    def delete(self, name: str) -> bool:
        return bool(self._db.change(delete(FederationTrust).where(FederationTrust.name == name)))

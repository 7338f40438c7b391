"""What the admin API, the web page and the CLI show of a CI or a personal token: one view
of each for all three."""

from __future__ import annotations

import datetime as dt
from typing import Any, Self

from pydantic import BaseModel

__all__ = ["CITokenView", "PersonalTokenView", "TokenView"]


class TokenView(BaseModel):
    """A token with scopes of its own, as the people who manage it see it: never its
    secret or its hash."""

    name: str
    # live, expired or revoked, at the moment it was shown.
    state: str
    scopes: list[str]
    expires_at: dt.datetime
    created_at: dt.datetime
    created_by: str
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None
    last_used_ip: str | None

    @classmethod
    def of(cls, info: Any, now: dt.datetime) -> Self:
        """The view of a store's record (CITokenInfo, PersonalTokenInfo)."""
        # Each field from the record's namesake (its id is not shown); then the two it holds
        # otherwise: the state at `now`, the scope patterns as text.
        shown = {name: getattr(info, name) for name in cls.model_fields}
        shown |= {"state": info.state(now), "scopes": [str(p) for p in info.scopes.patterns]}
        return cls(**shown)


class CITokenView(TokenView):
    description: str


class PersonalTokenView(TokenView):
    # The person it is theirs: their own name.
    owner: str

"""What the admin API, the web page and the CLI show of a CI token: one view for all three."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel

from tokenserver.accounts import CITokenInfo

__all__ = ["CITokenView"]


class CITokenView(BaseModel):
    """A CI token as its admins see it: never its secret or its hash."""

    name: str
    # live, expired or revoked, at the moment it was shown.
    state: str
    scopes: list[str]
    description: str
    expires_at: dt.datetime
    created_at: dt.datetime
    created_by: str
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None
    last_used_ip: str | None

    @staticmethod
    def of(info: CITokenInfo, now: dt.datetime) -> CITokenView:
        # Each field from the record's namesake (its id is not shown); then the two it holds
        # otherwise: the state at `now`, the scope patterns as text.
        shown = {name: getattr(info, name) for name in CITokenView.model_fields}
        shown |= {"state": info.state(now), "scopes": [str(p) for p in info.scopes.patterns]}
        return CITokenView(**shown)

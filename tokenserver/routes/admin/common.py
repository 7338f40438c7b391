"""What every admin resource shares: the error shape and strict bodies."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, ParamSpec

from fastapi import Path, Query, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict

from tokenserver.accounts import MAX_ID, InvalidValue, parse_id

__all__ = ["ERROR_RESPONSES", "ErrorBody", "NameFilter", "RowId", "StrictBody", "answers_nothing"]

P = ParamSpec("P")


def _row_id(value: object) -> object:
    # ASCII digits, as `parse_id` reads an id everywhere else: int() would also
    # take "1.0", "+1", " 1" or "1_0", other spellings of some row.
    if isinstance(value, str):
        try:
            return parse_id(value)
        except InvalidValue as exc:
            raise ValueError(str(exc)) from None
    return value


# A row's id in a path: anything but its digits, or out of range, is a 400,
# not a database error.
RowId = Annotated[int, BeforeValidator(_row_id), Path(ge=1, le=MAX_ID)]
# An optional filter on a user's (or subject's) name.
NameFilter = Annotated[str | None, Query(max_length=255)]


class ErrorBody(BaseModel):
    """Every refusal, as the token endpoint's errors (RFC 6749 §5.2 and `details`)."""

    error: str
    error_description: str
    details: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "malformed request or refused value"},
    401: {"model": ErrorBody, "description": "no or bad credentials"},
    403: {"model": ErrorBody, "description": "not a member of the admin group"},
    404: {"model": ErrorBody, "description": "no such user, token or session"},
    409: {"model": ErrorBody, "description": "the name is taken"},
    413: {"model": ErrorBody, "description": "the body exceeds server.max_body_bytes"},
    429: {"model": ErrorBody, "description": "too many failed logins"},
    503: {"model": ErrorBody, "description": "an identity backend is unavailable"},
}


class StrictBody(BaseModel):
    # No coercion: `"ttl": true` or `"disabled": "no"` is a 400, not a guess.
    model_config = ConfigDict(extra="forbid", strict=True)


def answers_nothing(
    route: Callable[..., Callable[[Callable[..., Any]], object]],
    path: str,
    name: str,
    summary: str,
) -> Callable[[Callable[P, object]], Callable[P, Response]]:
    """Registers an act at `path` with `route` (a router's put or delete), answering 204.

    `name` and `summary` are the route's, as in OpenAPI. The endpoint is a
    plain function, as every admin endpoint is, so FastAPI runs the act in
    its thread pool: it waits on the database.
    """

    def register(act: Callable[P, object]) -> Callable[P, Response]:
        # Wrapped, so that FastAPI reads the act's parameters (path, body, admin).
        @functools.wraps(act)
        def endpoint(*args: P.args, **kwargs: P.kwargs) -> Response:
            act(*args, **kwargs)
            return Response(status_code=204)

        route(path, status_code=204, name=name, summary=summary)(endpoint)
        return endpoint

    return register

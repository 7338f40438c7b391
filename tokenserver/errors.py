"""The token server's HTTP errors, and the one table from domain refusals to them.

The JSON body is RFC 6749 §5.2's shape; `details` repeats the description
because the Docker client shows that field to its user. `app.py` turns an
error into its response in one place; `from_refusal` and
`from_account_error` decide which error a refused grant or account change
becomes, for each flavour of the protocol.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Literal

from tokenserver import accounts, refusals

__all__ = [
    "AdminUnauthorized",
    "ClientGone",
    "Conflict",
    "Forbidden",
    "HTTPError",
    "InvalidClient",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidScope",
    "NotFound",
    "PayloadTooLarge",
    "TemporarilyUnavailable",
    "TokenEndpointError",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedGrantType",
    "from_account_error",
    "from_refusal",
    "refusal",
]


class TokenEndpointError(Exception):
    status = 400
    error = "invalid_request"

    def __init__(self, description: str, *, close: bool = False) -> None:
        super().__init__(description)
        self.description = description
        # Answer, then close the connection: what is left of the request body is not read.
        self.close = close

    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> dict[str, str]:
        return {
            "error": self.error,
            "error_description": self.description,
            "details": self.description,
        }


class InvalidRequest(TokenEndpointError):
    pass


class InvalidScope(TokenEndpointError):
    error = "invalid_scope"


class InvalidGrant(TokenEndpointError):
    error = "invalid_grant"


class UnsupportedGrantType(TokenEndpointError):
    error = "unsupported_grant_type"


class InvalidClient(TokenEndpointError):
    status = 401
    error = "invalid_client"


class PayloadTooLarge(TokenEndpointError):
    status = 413


class ClientGone(TokenEndpointError):
    """The client disconnected before its request was complete; nobody reads the answer."""

    status = 499  # as nginx logs it: the client closed the request


class Unauthorized(TokenEndpointError):
    """Wrong Basic credentials on GET /token: 401 with a Basic challenge."""

    status = 401
    error = "unauthorized"

    def __init__(self, description: str, realm: str, *, close: bool = False) -> None:
        super().__init__(description, close=close)
        self.realm = realm

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": f'Basic realm="{self.realm}"'}


class TemporarilyUnavailable(TokenEndpointError):
    status = 503
    error = "temporarily_unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class TooManyRequests(TokenEndpointError):
    """Too many failed logins for this account or address; the password was not checked."""

    status = 429
    error = "too_many_requests"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; retry in {retry_after} s")
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class AdminUnauthorized(Unauthorized):
    """The admin API needs a password or a token: 401 with both challenges."""

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": f'Basic realm="{self.realm}", Bearer realm="{self.realm}"'}


class Forbidden(TokenEndpointError):
    status = 403
    error = "forbidden"


class NotFound(TokenEndpointError):
    status = 404
    error = "not_found"


class Conflict(TokenEndpointError):
    status = 409
    error = "conflict"


_HTTP_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    431: "invalid_request",
}


class HTTPError(TokenEndpointError):
    """An error raised by the framework (no route, wrong method, unreadable body)."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = _HTTP_CODES.get(status, "error")


_ACCOUNT_ERRORS: dict[type[accounts.AccountError], type[TokenEndpointError]] = {
    accounts.UnknownAccount: NotFound,
    accounts.NameTaken: Conflict,
    accounts.InvalidValue: InvalidRequest,
    accounts.DirectoryUnavailable: TemporarilyUnavailable,
}


def from_account_error(exc: accounts.AccountError) -> TokenEndpointError:
    """The answer to a change the accounts service refused (one table, one place)."""
    return _ACCOUNT_ERRORS.get(type(exc), InvalidRequest)(str(exc))


# Which answer a refused token request gets: on GET /token (the token spec),
# on POST /token (OAuth2), or at the admin API's door.
Flavour = Literal["token", "oauth", "admin"]
_Make = Callable[[refusals.Refused, str], TokenEndpointError]


def _plain(cls: type[TokenEndpointError]) -> _Make:
    return lambda exc, _realm: cls(str(exc))


def _challenge(cls: type[Unauthorized]) -> _Make:
    return lambda exc, realm: cls(str(exc), realm)


def _throttled(exc: refusals.Refused, _realm: str) -> TokenEndpointError:
    assert isinstance(exc, refusals.Throttled)
    return TooManyRequests(exc.retry_after)


_REFUSALS: dict[type[refusals.Refused], dict[Flavour, _Make]] = {
    refusals.UnknownService: dict.fromkeys(("token", "oauth", "admin"), _plain(InvalidRequest)),
    refusals.MalformedScope: dict.fromkeys(("token", "oauth", "admin"), _plain(InvalidScope)),
    refusals.AccountMismatch: dict.fromkeys(("token", "oauth", "admin"), _plain(InvalidRequest)),
    refusals.BadLogin: {
        "token": _challenge(Unauthorized),
        "oauth": _plain(InvalidGrant),
        "admin": _challenge(AdminUnauthorized),
    },
    refusals.CredentialsNeeded: {
        "token": _challenge(Unauthorized),
        "oauth": _plain(InvalidGrant),
        "admin": _challenge(AdminUnauthorized),
    },
    refusals.InvalidRefreshToken: dict.fromkeys(("token", "oauth", "admin"), _plain(InvalidGrant)),
    refusals.InvalidSubjectToken: dict.fromkeys(
        ("token", "oauth", "admin"), _plain(InvalidRequest)
    ),
    refusals.Throttled: dict.fromkeys(("token", "oauth", "admin"), _throttled),
    refusals.BackendDown: dict.fromkeys(
        ("token", "oauth", "admin"), _plain(TemporarilyUnavailable)
    ),
}


def from_refusal(exc: refusals.Refused, flavour: Flavour, realm: str) -> TokenEndpointError:
    """The answer to a refused token request (or admin login), as `flavour` expects it."""
    return _REFUSALS[type(exc)][flavour](exc, realm)


def refusal(status: int, description: str) -> tuple[Sequence[tuple[str, str]], bytes]:
    """A request refused by the HTTP layer (malformed or oversized head), in the same JSON."""
    return [("content-type", "application/json")], json.dumps(
        HTTPError(status, description).body()
    ).encode()

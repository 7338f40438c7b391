"""The token server's HTTP errors, and the one table from domain refusals to them.

The JSON body is RFC 6749 §5.2's shape; `details` repeats the description
because the Docker client shows that field to its user. `app.py` turns an
error into its response in one place; `from_refusal` and
`from_account_error` decide which error a refused grant, account change or
device request becomes, for each flavour of the protocol.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import ClassVar, Literal

from tokenserver import accounts, device, refusals
from tokenserver.audited import AuditedError

__all__ = [
    "AccessDenied",
    "AdminUnauthorized",
    "AuthorizationPending",
    "ClientGone",
    "Conflict",
    "ExpiredToken",
    "Forbidden",
    "FrameworkError",
    "InvalidClient",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidScope",
    "NotFound",
    "PayloadTooLarge",
    "SlowDown",
    "TemporarilyUnavailable",
    "TokenServerError",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedGrantType",
    "from_account_error",
    "from_refusal",
    "refusal",
]


class TokenServerError(Exception):
    """An error the client sees as a status, headers and RFC 6749's JSON body.

    Every answer that is not a success takes this shape, whichever door it
    came by: the token endpoint, the admin API or the framework's routing.
    """

    status = 400
    error = "invalid_request"

    def __init_subclass__(cls, *, status: int | None = None, error: str | None = None) -> None:
        # Each answer's status and code in its class line, so the list below reads as a table.
        super().__init_subclass__()
        if status is not None:
            cls.status = status
        if error is not None:
            cls.error = error

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


# -- answers at any door -------------------------------------------------------------


class InvalidRequest(TokenServerError): ...


class PayloadTooLarge(TokenServerError, status=413): ...


class ClientGone(TokenServerError, status=499):  # as nginx logs it: the client closed the request
    """The client disconnected before its request was complete; nobody reads the answer."""


class Unauthorized(TokenServerError, status=401, error="unauthorized"):
    """401 with a challenge in each of `schemes` (GET /token asks for Basic credentials)."""

    schemes: ClassVar[tuple[str, ...]] = ("Basic",)

    def __init__(self, description: str, realm: str, *, close: bool = False) -> None:
        super().__init__(description, close=close)
        self.realm = realm

    def headers(self) -> dict[str, str]:
        challenges = ", ".join(f'{scheme} realm="{self.realm}"' for scheme in self.schemes)
        return {"WWW-Authenticate": challenges}


class TemporarilyUnavailable(TokenServerError, status=503, error="temporarily_unavailable"):
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class TooManyRequests(TokenServerError, status=429, error="too_many_requests"):
    """Too many failed logins (or wrong codes, or waiting codes) for this account or address;
    what was sent was not checked."""

    def __init__(self, retry_after: int, reason: str = "too many failed logins") -> None:
        super().__init__(f"{reason}; retry in {retry_after} s")
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


_HTTP_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    431: "invalid_request",
}


class FrameworkError(TokenServerError):
    """An error raised by the framework (no route, wrong method, unreadable body)."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = _HTTP_CODES.get(status, "error")


# -- the token endpoint's own (RFC 6749 §5.2) -------------------------------------


class InvalidScope(TokenServerError, error="invalid_scope"): ...


class InvalidGrant(TokenServerError, error="invalid_grant"): ...


class UnsupportedGrantType(TokenServerError, error="unsupported_grant_type"): ...


class InvalidClient(TokenServerError, status=401, error="invalid_client"): ...


# -- the device authorization grant's (RFC 8628 §3.5) --------------------------------


class AuthorizationPending(TokenServerError, error="authorization_pending"): ...


class SlowDown(TokenServerError, error="slow_down"): ...


class AccessDenied(TokenServerError, error="access_denied"): ...


class ExpiredToken(TokenServerError, error="expired_token"): ...


# -- the admin API's own -------------------------------------------------------------


class AdminUnauthorized(Unauthorized):
    """The admin API needs a password or a token: both challenges."""

    schemes = ("Basic", "Bearer")


class Forbidden(TokenServerError, status=403, error="forbidden"): ...


class NotFound(TokenServerError, status=404, error="not_found"): ...


class Conflict(TokenServerError, status=409, error="conflict"): ...


# A change the accounts service refused, or a device request refused.
_REFUSED_CHANGES: dict[type[AuditedError], type[TokenServerError]] = {
    accounts.UnknownAccount: NotFound,
    accounts.NameTaken: Conflict,
    accounts.InvalidValue: InvalidRequest,
    accounts.DirectoryUnavailable: TemporarilyUnavailable,
    device.InvalidDeviceRequest: InvalidRequest,
    device.UnknownUserCode: NotFound,
    device.AlreadyDecided: Conflict,
    device.DeviceUnavailable: TemporarilyUnavailable,
}


def from_account_error(exc: accounts.AccountError | device.DeviceError) -> TokenServerError:
    """The answer to a change the accounts service refused, or to a device request
    (RFC 8628 §3.1-3.2, and the page's look at a code): one table, one place."""
    if isinstance(exc, device.DeviceThrottled):
        return TooManyRequests(exc.retry_after, exc.reason)
    return _REFUSED_CHANGES.get(type(exc), InvalidRequest)(str(exc))


# Which answer a refused token request gets: on GET /token (the token spec),
# on POST /token (OAuth2), or at the admin API's door.
Flavour = Literal["token", "oauth", "admin"]
_Make = Callable[[refusals.Refused, str], TokenServerError]


def _plain(cls: type[TokenServerError]) -> _Make:
    return lambda exc, _realm: cls(str(exc))


def _challenge(cls: type[Unauthorized]) -> _Make:
    return lambda exc, realm: cls(str(exc), realm)


def _throttled(exc: refusals.Refused, _realm: str) -> TokenServerError:
    assert isinstance(exc, refusals.Throttled)
    return TooManyRequests(exc.retry_after)


def _every(make: _Make) -> dict[Flavour, _Make]:
    return dict.fromkeys(("token", "oauth", "admin"), make)


# A login that did not prove itself: a challenge where a client can answer one.
_LOGIN_FAILED: dict[Flavour, _Make] = {
    "token": _challenge(Unauthorized),
    "oauth": _plain(InvalidGrant),
    "admin": _challenge(AdminUnauthorized),
}
_REFUSALS: dict[type[refusals.Refused], dict[Flavour, _Make]] = {
    refusals.UnknownService: _every(_plain(InvalidRequest)),
    refusals.MalformedScope: _every(_plain(InvalidScope)),
    refusals.AccountMismatch: _every(_plain(InvalidRequest)),
    refusals.BadLogin: _LOGIN_FAILED,
    refusals.CredentialsNeeded: _LOGIN_FAILED,
    refusals.InvalidRefreshToken: _every(_plain(InvalidGrant)),
    refusals.InvalidSubjectToken: _every(_plain(InvalidRequest)),
    refusals.Throttled: _every(_throttled),
    refusals.BackendDown: _every(_plain(TemporarilyUnavailable)),
    refusals.AuthorizationPending: _every(_plain(AuthorizationPending)),
    refusals.SlowDown: _every(_plain(SlowDown)),
    refusals.AccessDenied: _every(_plain(AccessDenied)),
    refusals.DeviceCodeExpired: _every(_plain(ExpiredToken)),
    refusals.InvalidDeviceCode: _every(_plain(InvalidGrant)),
}


def from_refusal(exc: refusals.Refused, flavour: Flavour, realm: str) -> TokenServerError:
    """The answer to a refused token request (or admin login), as `flavour` expects it."""
    return _REFUSALS[type(exc)][flavour](exc, realm)


def refusal(status: int, description: str) -> tuple[Sequence[tuple[str, str]], bytes]:
    """A request refused by the HTTP layer (malformed or oversized head), in the same JSON."""
    return [("content-type", "application/json")], json.dumps(
        FrameworkError(status, description).body()
    ).encode()

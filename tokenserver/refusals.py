"""Why a token request gets no token: one typed refusal for each reason.

`GrantService` raises them; `errors.from_refusal` turns each into the answer
its flavour of the protocol expects. `outcome` is the audit row's outcome.
"""

from __future__ import annotations

from tokenserver.audited import AuditedError

__all__ = [
    "AccessDenied",
    "AccountMismatch",
    "AuthorizationPending",
    "BackendDown",
    "BadLogin",
    "CredentialsNeeded",
    "DeviceCodeExpired",
    "InvalidDeviceCode",
    "InvalidRefreshToken",
    "InvalidSubjectToken",
    "MalformedScope",
    "Refused",
    "SlowDown",
    "Throttled",
    "UnknownService",
]


class Refused(AuditedError):
    """A token request that gets no token; `outcome` is its audit outcome."""


class UnknownService(Refused): ...


class MalformedScope(Refused): ...


class AccountMismatch(Refused): ...


class BadLogin(Refused, outcome="bad_credentials"):
    """Unknown name, wrong password or disabled account: indistinguishable to the client."""


class CredentialsNeeded(Refused, outcome="bad_credentials"):
    """What was asked (a refresh token) needs a caller who proved who it is."""


class InvalidRefreshToken(Refused, outcome="bad_credentials"): ...


class InvalidSubjectToken(Refused, outcome="bad_credentials"):
    """A token exchange whose ID token no trust accepts (RFC 8693 §2.2.2: invalid_request)."""


class Throttled(Refused, outcome="throttled"):
    """Too many failed logins for this account or address; the password was not checked."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; retry in {retry_after} s")
        self.retry_after = retry_after


class BackendDown(Refused, outcome="backend_unavailable"): ...


# -- the device authorization grant (RFC 8628 §3.5) ----------------------------------


class AuthorizationPending(Refused, outcome="pending"):
    """The person has not decided yet: poll again after the interval."""


class SlowDown(Refused, outcome="pending"):
    """Polled before the interval was up, which is now 5 s longer (the message says it)."""


class AccessDenied(Refused, outcome="denied"):
    """The person denied the device's request."""


class DeviceCodeExpired(Refused, outcome="bad_credentials"): ...


class InvalidDeviceCode(Refused, outcome="bad_credentials"):
    """Unknown, another client's or service's, or spent already."""

"""Why a token request gets no token: one typed refusal for each reason.

`GrantService` raises them; `errors.from_refusal` turns each into the answer
its flavour of the protocol expects. `outcome` is the audit row's outcome.
"""

from __future__ import annotations

from typing import ClassVar

from tokenserver.store.audit import Outcome

__all__ = [
    "AccountMismatch",
    "BackendDown",
    "BadLogin",
    "CredentialsNeeded",
    "InvalidRefreshToken",
    "InvalidSubjectToken",
    "MalformedScope",
    "Refused",
    "Throttled",
    "UnknownService",
]


class Refused(Exception):
    """A token request that gets no token; `outcome` is its audit outcome."""

    outcome: ClassVar[Outcome] = "invalid_request"


class UnknownService(Refused):
    pass


class MalformedScope(Refused):
    pass


class AccountMismatch(Refused):
    pass


class BadLogin(Refused):
    """Unknown name, wrong password or disabled account: indistinguishable to the client."""

    outcome = "bad_credentials"


class CredentialsNeeded(Refused):
    """What was asked (a refresh token) needs a caller who proved who it is."""

    outcome = "bad_credentials"


class InvalidRefreshToken(Refused):
    outcome = "bad_credentials"


class InvalidSubjectToken(Refused):
    """A token exchange whose ID token no trust accepts (RFC 8693 §2.2.2: invalid_request)."""

    outcome = "bad_credentials"


class Throttled(Refused):
    """Too many failed logins for this account or address; the password was not checked."""

    outcome = "throttled"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; retry in {retry_after} s")
        self.retry_after = retry_after


class BackendDown(Refused):
    outcome = "backend_unavailable"

"""The backend protocol and what authentication yields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from tokenserver.secret import Secret

__all__ = [
    "Account",
    "Backend",
    "BackendUnavailable",
    "BadCredentials",
    "Identity",
    "Kind",
]

Kind = Literal["user", "ci", "anonymous"]


@dataclass(frozen=True)
class Identity:
    """Who a request acts as, after authentication."""

    subject: str
    kind: Kind = "user"
    groups: frozenset[str] = field(default_factory=frozenset)
    backend: str = ""

    @classmethod
    def anonymous(cls) -> Identity:
        return cls("", "anonymous")


@dataclass(frozen=True)
class Account:
    """A backend's record of a user, cheap to fetch.

    `fingerprint` changes whenever the credentials do (e.g. the password
    hash), so a remembered successful check is only reused while it holds.
    """

    name: str
    groups: frozenset[str]
    fingerprint: str
    disabled: bool = False


class BadCredentials(Exception):
    """Unknown user, wrong password or disabled account: indistinguishable to the client."""


class BackendUnavailable(Exception):
    """A backend could not be asked (down, timing out); the client may retry."""


class Backend(Protocol):
    name: str

    def lookup(self, username: str) -> Account | None:
        """The account, or None if this backend does not know the user.

        Raises BadCredentials when the backend knows the name but will not let
        it log in at all (an ambiguous directory entry), BackendUnavailable
        when it cannot be asked.
        """
        ...

    def check(self, account: Account, password: Secret) -> bool:
        """The expensive proof: does this password belong to the account?"""
        ...

"""The backend protocol and what authentication yields."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from authcore.identity import Identity, Kind, ScopeLimit
from tokenserver.secret import Secret

__all__ = ["MISS", "Account", "Backend", "BackendUnavailable", "BadCredentials", "Peeked"]


@dataclass(frozen=True)
class Account:
    """A backend's record of a user (or a CI token), cheap to fetch.

    `fingerprint` changes whenever the credentials do (e.g. the password
    hash), so a remembered successful check is only reused while it holds.
    """

    name: str
    groups: frozenset[str]
    fingerprint: str
    disabled: bool = False
    kind: Kind = "user"
    # A CI token's or a trust's own scopes: nothing outside them is ever granted.
    limit: ScopeLimit | None = None
    attributes: tuple[tuple[str, str], ...] = ()
    # See Identity.account_key; "" where the backend cannot tell one account
    # of a name from the next.
    account_key: str = ""
    # The backend whose account this is, where another proved the password
    # (a personal token proves a person of the database, a directory, ...).
    backend: str = ""

    def identity(self, backend: str) -> Identity:
        return Identity(
            self.name,
            self.kind,
            self.groups,
            self.backend or backend,
            self.limit,
            self.attributes,
            self.account_key,
        )


class _Miss(enum.Enum):
    MISS = "miss"


# What `peek` says when only a blocking `lookup` could tell.
MISS: Final = _Miss.MISS
Peeked = Account | None | Literal[_Miss.MISS]


class BadCredentials(Exception):
    """Unknown user, wrong password or disabled account: indistinguishable to the client.

    `backend` names the backend that refused (empty when none knew the user).
    """

    def __init__(self, reason: str, backend: str = "") -> None:
        super().__init__(reason)
        self.backend = backend


class BackendUnavailable(Exception):
    """A backend could not be asked (down, timing out); the client may retry."""


class Backend(Protocol):
    name: str
    # Whether a successful check may be remembered (see CredentialCache); a
    # backend that records every use says no.
    remember_checks: bool
    # Whether `check` costs what the decoy does: a bcrypt check at the server's
    # cost. A cheaper check (a CI token's SHA-256, an ID token's signature, a
    # directory's bind) is followed by the decoy when it refuses, so a known
    # name refused costs what an unknown one does and timing does not tell
    # which names are live.
    checks_bcrypt: bool

    def wants(self, password: Secret) -> bool:
        """Whether this backend could hold a credential of this form at all.

        A backend whose secrets have a recognisable shape (CI tokens) is not
        asked about other passwords, so an ordinary login costs it nothing.
        """
        ...

    def lookup(self, username: str) -> Account | None:
        """The account, or None if this backend does not know the user.

        Raises BadCredentials when the backend knows the name but will not let
        it log in at all (an ambiguous directory entry), BackendUnavailable
        when it cannot be asked.
        """
        ...

    def peek(self, username: str) -> Peeked:
        """What `lookup` would say, if the backend can tell without blocking (else MISS).

        For the warm path on the event loop: a file already read, a cache. It
        never raises; whatever would, is a MISS for `lookup` to raise.
        """
        ...

    def account(self, subject: str) -> Account | None:
        """The account whose own name is `subject` (as `lookup` returned it), or None.

        Where a login name can be any spelling (or another attribute, as LDAP's
        filter allows), this finds an identity again by its canonical name.
        """
        ...

    def check(self, account: Account, password: Secret) -> Account | None:
        """The expensive proof: the account this password proves, or None.

        Usually `account` itself; a federated login's ID token proves an
        identity of its own (the trust's name and the token's subject).
        """
        ...

    def close(self) -> None:
        """Release connections at shutdown."""
        ...

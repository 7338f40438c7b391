"""Personal access tokens as an identity backend: the person's name, the token's secret.

Only passwords shaped like a personal secret (`tspat_` + 43 characters) are
brought here, so an ordinary login costs this backend nothing. The identity
proven is the person, as their own backend finds them now: their groups
today, their canonical name, their backend; the token only narrows it (its
scopes become the identity's limit). A token whose person is gone, disabled
or another account now (deleted and created again, a new password) proves
nothing. Every use is recorded (time and address), so checks are never
remembered by the credential cache; a wrong secret costs the chain's decoy
bcrypt check, as an unknown name's does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from authcore import context
from tokenserver.authn.base import MISS, Account, BackendUnavailable, Peeked
from tokenserver.names import name_key
from tokenserver.secret import Secret
from tokenserver.store.personal_tokens import PREFIX, PersonalTokenStore, UsedPersonalToken
from tokenserver.store.scoped_tokens import looks_like_secret

__all__ = ["ATTRIBUTE", "BACKEND_NAME", "People", "PersonalTokenBackend"]

BACKEND_NAME = "personal-token"
# The attribute naming the token a login used: in its audit row, never a secret.
ATTRIBUTE = "personal_token"
_UNAVAILABLE = "the personal token database cannot be reached"


class People(Protocol):
    """The backends of people, asked who a token's owner is now (see Authenticator.find)."""

    def find(self, subject: str) -> tuple[str, Account] | None: ...


class PersonalTokenBackend:
    name = BACKEND_NAME
    remember_checks = False
    # A SHA-256 of a 256-bit secret needs no key stretching; a refusal still
    # costs what an unknown name's does (the chain adds the decoy).
    checks_bcrypt = False

    def __init__(
        self, store: PersonalTokenStore, people: People, clock: Callable[[], dt.datetime]
    ) -> None:
        self._store = store
        self._people = people
        self._clock = clock

    def wants(self, password: Secret) -> bool:
        return looks_like_secret(PREFIX, password.reveal())

    def lookup(self, username: str) -> Account | None:
        """A stand-in for a person with live tokens: which token, only the secret says."""
        try:
            live = self._store.count_live(username, self._clock())
        except SQLAlchemyError:
            raise BackendUnavailable(_UNAVAILABLE) from None
        return Account(username, frozenset(), "") if live else None

    def peek(self, username: str) -> Peeked:
        return MISS  # every use is read and recorded in the database: a revoke holds at once

    def account(self, subject: str) -> Account | None:
        return None  # the person is found again by their own backend, never by a token

    def check(self, account: Account, password: Secret) -> Account | None:
        now = self._clock()
        try:
            token = self._store.find_live(password.reveal(), now)
        except SQLAlchemyError:
            raise BackendUnavailable(_UNAVAILABLE) from None
        if token is None or name_key(token.owner.name) != name_key(account.name):
            return None
        person = self._person(token)
        if person is None:
            return None
        try:
            self._store.record_use(token.id, now, context.CLIENT_IP.get())
        except SQLAlchemyError:
            raise BackendUnavailable(_UNAVAILABLE) from None
        return person

    def _person(self, token: UsedPersonalToken) -> Account | None:
        """The token's owner as their backend finds them now, narrowed to the token; or None."""
        found = self._people.find(token.owner.name)
        if found is None:
            return None  # gone or disabled
        backend, person = found
        if person.kind != "user" or (backend, person.account_key) != (
            token.owner.backend,
            token.owner.account_key,
        ):
            return None  # another account of the name now, or the password changed
        return Account(
            person.name,
            person.groups,
            "",
            limit=token.scopes,
            attributes=((ATTRIBUTE, token.name),),
            account_key=person.account_key,
            backend=backend,
        )

    def close(self) -> None:
        pass  # nothing held open

"""CI tokens as an identity backend: the token's name is the username, its secret the password.

Only passwords shaped like a CI secret (`tsci_` + 43 characters) are brought
here, so an ordinary login costs this backend nothing. Every successful use
is recorded (time and client address), so its checks are never remembered by
the credential cache; a revoked or expired token is simply not found. A wrong
secret and an unknown, expired or revoked name all cost the chain's decoy
bcrypt check, so the time of a refusal does not tell a live name.
A CI identity is never found again by name: refresh tokens and admin tokens
are for people.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from authcore import context
from tokenserver.authn.base import MISS, Account, BackendUnavailable, Peeked
from tokenserver.secret import Secret
from tokenserver.store.ci_tokens import CITokenStore, hash_secret, looks_like_ci_secret

__all__ = ["CITokenBackend"]


class CITokenBackend:
    name = "ci-token"
    remember_checks = False
    # A SHA-256 of a 256-bit secret needs no key stretching, but a refusal must
    # still cost what an unknown name's does: the chain adds the decoy.
    checks_bcrypt = False

    def __init__(self, store: CITokenStore, clock: Callable[[], dt.datetime]) -> None:
        self._store = store
        self._clock = clock

    def wants(self, password: Secret) -> bool:
        return looks_like_ci_secret(password.reveal())

    def lookup(self, username: str) -> Account | None:
        try:
            token = self._store.find_live(username, self._clock())
        except SQLAlchemyError:
            raise BackendUnavailable("the CI token database cannot be reached") from None
        if token is None:
            return None
        # The fingerprint carries the row id with the hash, so `check` can record the use.
        return Account(
            token.name,
            frozenset(),
            f"{token.id}:{token.secret_hash}",
            kind="ci",
            limit=token.scopes,
        )

    def peek(self, username: str) -> Peeked:
        return MISS  # every use is read and recorded in the database: a revoke holds at once

    def account(self, subject: str) -> Account | None:
        return None

    def check(self, account: Account, password: Secret) -> Account | None:
        token_id, _, expected = account.fingerprint.partition(":")
        if not hmac.compare_digest(hash_secret(password.reveal()), expected):
            return None
        try:
            self._store.record_use(int(token_id), self._clock(), context.CLIENT_IP.get())
        except SQLAlchemyError:
            raise BackendUnavailable("the CI token database cannot be reached") from None
        return account

    def close(self) -> None:
        pass  # nothing held open

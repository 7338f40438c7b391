"""Tries the configured backends in order.

"No such user" moves on to the next backend; a wrong password stops the chain,
so a user cannot be shadowed by a same-named entry further down.

A refusal costs one check of the password presented against a bcrypt hash,
as a database user's wrong password does: an unknown name's against the
decoy, and so does a known name's whose backend proves passwords more
cheaply (CI tokens, trusts, a directory). Otherwise the time of a refusal
would tell which names are live. A proven password spends nothing extra.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from authcore.identity import Identity
from tokenserver.authn.base import MISS, Account, Backend, BadCredentials
from tokenserver.authn.cache import CredentialCache
from tokenserver.passwords import hash_password, verify_password
from tokenserver.secret import Secret

__all__ = ["Authenticator"]


@functools.cache
def _decoy_hash(cost: int) -> str:
    return hash_password("decoy-password", rounds=cost)


class Authenticator:
    def __init__(
        self, backends: Sequence[Backend], cache: CredentialCache, bcrypt_cost: int = 12
    ) -> None:
        self.backends = tuple(backends)
        self.cache = cache
        # Checked for unknown names and after a cheap backend's refusal, so these
        # cost as long as a wrong password: the cost of the hashes the server writes.
        self._decoy_hash = _decoy_hash(bcrypt_cost)

    def authenticate(self, username: str, password: Secret) -> Identity:
        for backend in self.backends:
            if not backend.wants(password):
                continue
            try:
                account = backend.lookup(username)
            except BadCredentials as exc:
                exc.backend = backend.name
                raise
            if account is None:
                continue
            if account.disabled:
                # Spend the same time as a live account, so timing does not tell.
                self._check(backend, account, password)
                raise BadCredentials("account disabled", backend.name)
            remember = backend.remember_checks
            if remember and self.cache.hit(backend.name, username, password, account.fingerprint):
                return account.identity(backend.name)
            proven = self._check(backend, account, password)
            if proven is None:
                raise BadCredentials("wrong password", backend.name)
            if remember:
                self.cache.remember(backend.name, username, password, account.fingerprint)
            return proven.identity(backend.name)
        self._decoy(password)
        raise BadCredentials("unknown user")

    def _check(self, backend: Backend, account: Account, password: Secret) -> Account | None:
        proven = backend.check(account, password)
        if proven is None and not backend.checks_bcrypt:
            self._decoy(password)
        return proven

    def _decoy(self, password: Secret) -> None:
        # The same call as a stored hash's check, so a password bcrypt would not
        # be asked about (too long, NUL) is refused as quickly here as there.
        verify_password(password.reveal(), self._decoy_hash)

    def remembered(self, username: str, password: Secret) -> Identity | None:
        """The identity `authenticate` would return, if memory alone proves it; else None.

        Runs on the event loop, so it touches nothing that blocks: each
        backend's `peek` and the credential cache. It only ever lets a
        remembered password in; a refusal, an unknown name, a disabled
        account, anything a backend cannot tell from memory is None, and the
        caller runs `authenticate` (in a thread), which decides afresh.
        """
        for backend in self.backends:
            if not backend.wants(password):
                continue
            account = backend.peek(username)
            if account is MISS or (account is not None and account.disabled):
                return None
            if account is None:
                continue
            if backend.remember_checks and self.cache.hit(
                backend.name, username, password, account.fingerprint
            ):
                return account.identity(backend.name)
            return None
        return None

    def find(self, subject: str) -> tuple[str, Account] | None:
        """The first backend's live (not disabled) account whose own name is `subject`."""
        for backend in self.backends:
            try:
                account = backend.account(subject)
            except BadCredentials:
                return None  # e.g. a directory entry that is ambiguous
            if account is not None:
                return None if account.disabled else (backend.name, account)
        return None

    def knows(self, username: str) -> bool:
        """Whether any backend has an account of this name, enabled or not.

        Raises BackendUnavailable when a backend cannot be asked.
        """
        for backend in self.backends:
            try:
                if backend.lookup(username) is not None or backend.account(username) is not None:
                    return True
            except BadCredentials:
                return True  # known, but refused outright (an ambiguous directory entry)
        return False

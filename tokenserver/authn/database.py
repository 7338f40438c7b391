"""Users kept in the server's own database, remembered for the warm path.

Every `lookup` reads the database (it runs in a worker thread, before a
password check), and what it read is remembered for `ttl` seconds so that
`peek` can answer on the event loop: a login whose password check is
remembered too (the credential cache) then touches no database at all. Only
`peek` ever answers from memory, and only the warm path, which can only let
a remembered password in, asks it; a password never seen before, a wrong
one, an unknown name and every refresh-token or admin-token check read the
database afresh. So a password change, disable or delete made elsewhere
(another instance, another worker, the CLI) stops a remembered password
within `ttl`, and one made through this process's own accounts service at
once (the user store tells us).

A person of the OpenID provider (source "sso") counts as disabled once the
provider has not vouched for them for `sso_recheck` seconds (a sign-in
through it, or the recheck of `sso/recheck.py`), and always when no provider
is configured: their personal tokens, refresh tokens and web sessions rest
on the provider's word, and an old word is none. Signing in again revives
them.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from sqlalchemy.exc import OperationalError

from authcore.cache import Cache
from tokenserver.authn.base import MISS, Account, BackendUnavailable, Peeked
from tokenserver.authn.hashed import HashedPasswordBackend
from tokenserver.store.users import Credentials, UserStore, account_key

__all__ = ["DatabaseBackend"]

MAX_ENTRIES = 10_000


class DatabaseBackend(HashedPasswordBackend):
    name = "database"

    def __init__(
        self,
        users: UserStore,
        ttl: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        sso_recheck: float | None = None,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._users = users
        self._ttl = ttl
        self._sso_recheck = sso_recheck
        self._now = now
        # None is remembered too: an unknown name.
        self._seen: Cache[str, Account | None] = Cache(MAX_ENTRIES, ttl=ttl, clock=clock)
        users.on_change(self.forget)

    def lookup(self, username: str) -> Account | None:
        try:
            found = self._users.credentials(username)
        except OperationalError as exc:
            raise BackendUnavailable("the user database cannot be reached") from exc
        account = None
        if found is not None:
            account = Account(
                found.name,
                found.groups,
                fingerprint=found.password_hash,
                disabled=found.disabled or self._unvouched(found),
                account_key=account_key(found.account_id, found.password_hash),
            )
        if self._ttl > 0:
            self._seen.put(username, account)
        return account

    def _unvouched(self, found: Credentials) -> bool:
        if found.source != "sso":
            return False
        if self._sso_recheck is None or found.sso_checked_at is None:
            return True
        return (self._now() - found.sso_checked_at).total_seconds() > self._sso_recheck

    def peek(self, username: str) -> Peeked:
        return self._seen.get(username, MISS)

    def forget(self, username: str) -> None:
        self._seen.pop(username)

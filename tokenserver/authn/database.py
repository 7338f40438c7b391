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
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.exc import OperationalError

from authcore.cache import Cache
from tokenserver.authn.base import MISS, Account, BackendUnavailable, Peeked
from tokenserver.authn.hashed import HashedPasswordBackend
from tokenserver.store.users import UserStore, account_key

__all__ = ["DatabaseBackend"]

MAX_ENTRIES = 10_000


class DatabaseBackend(HashedPasswordBackend):
    name = "database"

    def __init__(
        self, users: UserStore, ttl: float = 0.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._users = users
        self._ttl = ttl
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
                disabled=found.disabled,
                account_key=account_key(found.account_id, found.password_hash),
            )
        if self._ttl > 0:
            self._seen.put(username, account)
        return account

    def peek(self, username: str) -> Peeked:
        return self._seen.get(username, MISS)

    def forget(self, username: str) -> None:
        self._seen.pop(username)

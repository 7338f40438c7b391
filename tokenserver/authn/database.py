"""Users kept in the server's own database."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from tokenserver.authn.base import Account, BackendUnavailable
from tokenserver.passwords import verify_password
from tokenserver.secret import Secret
from tokenserver.store.users import UserStore

__all__ = ["DatabaseBackend"]


class DatabaseBackend:
    name = "database"
    remember_checks = True

    def __init__(self, users: UserStore) -> None:
        self._users = users

    def lookup(self, username: str) -> Account | None:
        try:
            user = self._users.get(username)
        except OperationalError as exc:
            raise BackendUnavailable("the user database cannot be reached") from exc
        if user is None:
            return None
        return Account(
            user.name,
            frozenset(user.groups),
            fingerprint=user.password_hash,
            disabled=user.disabled,
        )

    def account(self, subject: str) -> Account | None:
        return self.lookup(subject)  # a login name here is the account's own name

    def wants(self, password: Secret) -> bool:
        return True

    def check(self, account: Account, password: Secret) -> bool:
        return verify_password(password.reveal(), account.fingerprint)

    def close(self) -> None:
        pass  # nothing held open

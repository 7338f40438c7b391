"""Users kept in the server's own database."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from tokenserver.authn.base import Account, BackendUnavailable
from tokenserver.authn.hashed import HashedPasswordBackend
from tokenserver.store.users import UserStore

__all__ = ["DatabaseBackend"]


class DatabaseBackend(HashedPasswordBackend):
    name = "database"

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

"""What the backends that keep bcrypt hashes (the database, htpasswd) have in common."""

from __future__ import annotations

from tokenserver.authn.base import Account, Peeked
from tokenserver.passwords import verify_password
from tokenserver.secret import Secret

__all__ = ["HashedPasswordBackend"]


class HashedPasswordBackend:
    """An account's fingerprint is its password hash, and its login name is its own name."""

    name: str
    remember_checks = True
    checks_bcrypt = True

    def lookup(self, username: str) -> Account | None:
        raise NotImplementedError

    def peek(self, username: str) -> Peeked:
        raise NotImplementedError

    def account(self, subject: str) -> Account | None:
        return self.lookup(subject)

    def wants(self, password: Secret) -> bool:
        return True

    def check(self, account: Account, password: Secret) -> Account | None:
        return account if verify_password(password.reveal(), account.fingerprint) else None

    def close(self) -> None:
        pass  # nothing held open

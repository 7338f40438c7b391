"""Users, groups, passwords, CI tokens and refresh tokens: every change, in one place.

The admin API and the CLI only parse input and format output; what a change
means (a new password ends the user's sessions, a CI token never reaches an
`admin` resource, a name is one account however it is spelt) and its audit
record live here. Every method that changes something records one audit row
with its outcome, whether it succeeded or not. Methods block (bcrypt, the
database): call them from a worker thread in async code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import ClassVar, Protocol

from sqlalchemy.exc import SQLAlchemyError

from authcore.identity import ScopeLimit, ScopePatternError
from tokenserver.audit import Actor, AdminTrail
from tokenserver.authn.base import BackendUnavailable
from tokenserver.federation.spec import InvalidTrust, TrustSpec, check_ca_file
from tokenserver.names import InvalidName, check_name, name_key
from tokenserver.passwords import PasswordRejected, hash_password
from tokenserver.store.audit import Outcome
from tokenserver.store.ci_tokens import CITokenExists, CITokenInfo, CITokenStore
from tokenserver.store.refresh_tokens import RefreshTokenInfo, RefreshTokenStore
from tokenserver.store.trusts import TrustExists, TrustStore
from tokenserver.store.users import UserExists, UserInfo, UserNotFound, UserStore

__all__ = [
    "ADMIN_RESOURCE_TYPE",
    "AccountError",
    "Accounts",
    "Directory",
    "DirectoryUnavailable",
    "InvalidValue",
    "NameTaken",
    "UnknownAccount",
]

# Scopes of this type reach the admin API; no CI token may ever hold one.
ADMIN_RESOURCE_TYPE = "admin"
MAX_DESCRIPTION = 1024
MAX_SCOPES = 100
MAX_GROUPS = 100
# Row ids are the database's 64-bit integers; a larger number names no row
# and cannot even be asked about (the driver refuses it).
MAX_ROW_ID = 2**63 - 1


class AccountError(Exception):
    """A change that cannot be made; the message says why (never a secret)."""

    outcome: ClassVar[Outcome] = "invalid_request"


class UnknownAccount(AccountError):
    outcome = "not_found"


class NameTaken(AccountError):
    outcome = "conflict"


class InvalidValue(AccountError):
    outcome = "invalid_request"


class DirectoryUnavailable(AccountError):
    outcome = "backend_unavailable"


class Directory(Protocol):
    """Every identity backend, asked whether a name is someone's (see Authenticator.knows)."""

    def knows(self, username: str) -> bool: ...


def _existing(name: str, what: str = "user") -> str:
    """A name to look up: one no account could have (a NUL, say, which PostgreSQL
    cannot even compare) names nothing."""
    try:
        return check_name(name)
    except InvalidName:
        raise UnknownAccount(f"no {what} {name[:100]!r}") from None


def _check_groups(groups: Sequence[str]) -> None:
    if len(groups) > MAX_GROUPS:
        raise InvalidValue(f"a user has at most {MAX_GROUPS} groups")
    try:
        for group in groups:
            check_name(group, "group name")
    except InvalidName as exc:
        raise InvalidValue(str(exc)) from None


class Accounts:
    def __init__(
        self,
        *,
        users: UserStore,
        refresh_tokens: RefreshTokenStore,
        ci_tokens: CITokenStore,
        directory: Directory,
        trail: AdminTrail,
        clock: Callable[[], dt.datetime],
        bcrypt_cost: int,
        ci_max_ttl: int,
        trusts: TrustStore,
        configured_trusts: Sequence[TrustSpec] = (),
    ) -> None:
        self._trusts = trusts
        self._configured_trusts = {spec.name: spec for spec in configured_trusts}
        self._users = users
        self._refresh = refresh_tokens
        self._ci = ci_tokens
        self._directory = directory
        self._trail = trail
        self._clock = clock
        self._cost = bcrypt_cost
        self._ci_max_ttl = ci_max_ttl

    @contextmanager
    def _act(self, actor: Actor, action: str, target: str) -> Iterator[None]:
        """Run one act and record how it ended."""
        outcome: Outcome = "ok"
        try:
            yield
        except AccountError as exc:
            outcome = exc.outcome
            raise
        except (SQLAlchemyError, BackendUnavailable):
            outcome = "backend_unavailable"
            raise DirectoryUnavailable("the database or a directory is unavailable") from None
        finally:
            self._trail.record(actor, action, target[:255], outcome)

    def _hash(self, password: str) -> str:
        try:
            return hash_password(password, rounds=self._cost)
        except PasswordRejected as exc:
            raise InvalidValue(str(exc)) from None

    # -- users ------------------------------------------------------------

    def list_users(self) -> list[UserInfo]:
        return self._users.list()

    def get_user(self, name: str) -> UserInfo:
        user = self._users.get(_existing(name))
        if user is None:
            raise UnknownAccount(f"no user {name}")
        return user

    def create_user(
        self, actor: Actor, name: str, password: str, groups: Sequence[str] = ()
    ) -> UserInfo:
        with self._act(actor, "user.create", name):
            try:
                check_name(name)
            except InvalidName as exc:
                raise InvalidValue(str(exc)) from None
            _check_groups(groups)
            hashed = self._hash(password)
            if self._ci.live_like(name, self._clock()):
                raise NameTaken(f"a CI token is named {name}")
            if self._trust_named(name):
                raise NameTaken(f"a federation trust is named {name}")
            try:
                return self._users.add(name, hashed, groups)
            except UserExists:
                raise NameTaken(
                    f"user {name} already exists (in this or another spelling)"
                ) from None

    def set_password(self, actor: Actor, name: str, password: str) -> int:
        """Set the password and revoke the user's refresh tokens; the number revoked."""
        with self._act(actor, "user.password", name):
            hashed = self._hash(password)
            try:
                self._users.set_password(_existing(name), hashed)
            except UserNotFound:
                raise UnknownAccount(f"no user {name}") from None
            # A new password ends every session the old one opened.
            return self._refresh.revoke_subject(name, self._clock())

    def set_groups(self, actor: Actor, name: str, groups: Sequence[str]) -> UserInfo:
        with self._act(actor, "user.groups", name):
            _check_groups(groups)
            try:
                self._users.set_groups(_existing(name), groups)
            except UserNotFound:
                raise UnknownAccount(f"no user {name}") from None
            return self.get_user(name)

    def set_disabled(self, actor: Actor, name: str, disabled: bool) -> UserInfo:
        with self._act(actor, "user.disable" if disabled else "user.enable", name):
            try:
                self._users.set_disabled(_existing(name), disabled)
            except UserNotFound:
                raise UnknownAccount(f"no user {name}") from None
            return self.get_user(name)

    def delete_user(self, actor: Actor, name: str) -> int:
        """Delete the user and revoke their refresh tokens; the number revoked."""
        with self._act(actor, "user.delete", name):
            try:
                self._users.delete(_existing(name))
            except UserNotFound:
                raise UnknownAccount(f"no user {name}") from None
            return self._refresh.revoke_subject(name, self._clock())

    # -- CI tokens ----------------------------------------------------------

    def list_ci_tokens(self) -> list[CITokenInfo]:
        return self._ci.list()

    def create_ci_token(
        self,
        actor: Actor,
        name: str,
        scopes: Sequence[str],
        ttl: int,
        description: str = "",
    ) -> tuple[CITokenInfo, str]:
        """A new token and its secret (shown once)."""
        with self._act(actor, "ci_token.create", name):
            limit = self._ci_scopes(scopes)
            if ttl <= 0:
                raise InvalidValue("ttl must be a positive number of seconds")
            if ttl > self._ci_max_ttl:
                raise InvalidValue(f"ttl exceeds the maximum of {self._ci_max_ttl} s")
            if len(description) > MAX_DESCRIPTION:
                raise InvalidValue(f"the description has more than {MAX_DESCRIPTION} characters")
            try:
                check_name(name, "CI token name")
            except InvalidName as exc:
                raise InvalidValue(str(exc)) from None
            # A token named like a user would issue tokens in that user's name.
            if self._users.exists_like(name) or self._directory.knows(name):
                raise NameTaken(f"{name} is a user's name")
            if self._trust_named(name):
                raise NameTaken(f"a federation trust is named {name}")
            now = self._clock()
            try:
                return self._ci.create(
                    name,
                    limit,
                    now + dt.timedelta(seconds=ttl),
                    now,
                    description=description,
                    created_by=actor.subject,
                )
            except CITokenExists:
                raise NameTaken(f"a live CI token named {name} exists; revoke it first") from None

    @staticmethod
    def _ci_scopes(scopes: Sequence[str]) -> ScopeLimit:
        if not 0 < len(scopes) <= MAX_SCOPES:
            raise InvalidValue(f"a CI token has 1 to {MAX_SCOPES} scopes")
        try:
            limit = ScopeLimit.parse(scopes)
        except ScopePatternError as exc:
            raise InvalidValue(f"bad scope: {exc}") from None
        if any(p.type == ADMIN_RESOURCE_TYPE for p in limit.patterns):
            raise InvalidValue("a CI token may not hold admin scopes")
        return limit

    def revoke_ci_token(self, actor: Actor, name: str) -> None:
        with self._act(actor, "ci_token.revoke", name):
            if not self._ci.revoke(_existing(name, "CI token"), self._clock()):
                raise UnknownAccount(f"no live CI token named {name}")

    # -- federation trusts -----------------------------------------------------

    def list_trusts(self) -> list[tuple[TrustSpec, str]]:
        """Every trust, with where it is defined: `config` (read-only here) or `database`."""
        configured = [(spec, "config") for spec in self._configured_trusts.values()]
        return configured + [(spec, "database") for spec in self._trusts.list()]

    def _trust_named(self, name: str) -> bool:
        key = name_key(name)
        return any(name_key(n) == key for n in self._configured_trusts) or (
            self._trusts.exists_like(name)
        )

    def create_trust(self, actor: Actor, spec: TrustSpec) -> TrustSpec:
        with self._act(actor, "trust.create", spec.name):
            try:
                spec.build()
                if spec.ca_file is not None:
                    check_ca_file(spec.ca_file)
            except InvalidTrust as exc:
                raise InvalidValue(str(exc)) from None
            if any(name_key(n) == name_key(spec.name) for n in self._configured_trusts):
                raise NameTaken(f"the configuration defines a trust named {spec.name}")
            # The trust's name is the username pipelines log in with: it is no one else's.
            if (
                self._users.exists_like(spec.name)
                or self._directory.knows(spec.name)
                or self._ci.live_like(spec.name, self._clock())
            ):
                raise NameTaken(f"{spec.name} is a user's or a CI token's name")
            try:
                self._trusts.add(spec, self._clock(), actor.subject)
            except TrustExists:
                raise NameTaken(f"a trust named {spec.name} exists") from None
            return spec

    def delete_trust(self, actor: Actor, name: str) -> None:
        with self._act(actor, "trust.delete", name):
            if name in self._configured_trusts:
                raise InvalidValue(f"trust {name} is defined in the configuration; remove it there")
            if not self._trusts.delete(name):
                raise UnknownAccount(f"no trust {name}")

    # -- refresh tokens -------------------------------------------------------

    def list_refresh_tokens(self, user: str | None = None) -> list[RefreshTokenInfo]:
        return self._refresh.list(None if user is None else _existing(user))

    def revoke_refresh_tokens(self, actor: Actor, user: str) -> int:
        """Revoke every live refresh token of `user`; the number revoked."""
        with self._act(actor, "refresh_token.revoke", user):
            return self._refresh.revoke_subject(_existing(user), self._clock())

    def revoke_refresh_token(self, actor: Actor, token_id: int) -> None:
        with self._act(actor, "refresh_token.revoke", f"#{token_id}"):
            if not 0 < token_id <= MAX_ROW_ID:
                raise InvalidValue(f"{str(token_id)[:30]} is not a refresh token id")
            if not self._refresh.revoke(token_id, self._clock()):
                raise UnknownAccount(f"no live refresh token {token_id}")

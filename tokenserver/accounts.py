"""Users, groups, passwords, CI and personal tokens, refresh tokens, web sessions: every change,
in one place.

The admin API, the CLI and the web page only parse input and format output;
what a change means (a new password ends the user's sessions, a CI token
never reaches an `admin` resource, a name is one account however it is
spelt, a user deleted and created again is another account) and its audit
record live here. Every method that changes something records one audit row
with its outcome, whether it succeeded or not. Methods block (bcrypt, the
database): call them from a worker thread in async code.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from authcore.identity import Identity, ScopeLimit, ScopePatternError
from tokenserver.audit import Actor, AdminTrail
from tokenserver.audited import AuditedError
from tokenserver.authn.base import Account, BackendUnavailable
from tokenserver.authn.database import DatabaseBackend
from tokenserver.authz.policy import ADMIN_GROUP
from tokenserver.federation.trusts import InvalidTrust, TrustSpec, check_ca_file
from tokenserver.names import InvalidName, check_name, name_key
from tokenserver.passwords import PasswordRejected, hash_password
from tokenserver.store.audit import Outcome
from tokenserver.store.ci_tokens import CITokenExists, CITokenInfo, CITokenStore
from tokenserver.store.personal_tokens import (
    Owner,
    PersonalTokenExists,
    PersonalTokenInfo,
    PersonalTokenStore,
)
from tokenserver.store.refresh_tokens import RefreshTokenInfo, RefreshTokenStore
from tokenserver.store.trusts import TrustExists, TrustStore
from tokenserver.store.ui_sessions import Session, SessionInfo, UISessionStore
from tokenserver.store.users import SSOPerson, UserExists, UserInfo, UserNotFound, UserStore

# With the records the methods return, so front ends need not reach into the store for them.
__all__ = [
    "ADMIN_RESOURCE_TYPE",
    "MAX_GROUPS",
    "MAX_ID",
    "AccountError",
    "Accounts",
    "CITokenInfo",
    "Directory",
    "DirectoryUnavailable",
    "Ended",
    "InvalidValue",
    "NameTaken",
    "PersonalTokenInfo",
    "RefreshTokenInfo",
    "SSOPerson",
    "Session",
    "SessionInfo",
    "SignInRefused",
    "UnknownAccount",
    "UserInfo",
    "parse_id",
]

# Scopes of this type reach the admin API; no CI token may ever hold one.
ADMIN_RESOURCE_TYPE = "admin"
MAX_DESCRIPTION = 1024
MAX_SCOPES = 100
MAX_GROUPS = 100
# Live personal tokens a person may hold at once: a laptop, a CI job, a script each.
MAX_PERSONAL_TOKENS = 100
# The largest row id asked for (the admin API's bound too): beyond it no row
# exists, and PostgreSQL's integers would overflow before the database could say so.
MAX_ID = 2**62


class AccountError(AuditedError):
    """A change that cannot be made; the message says why (never a secret)."""


class UnknownAccount(AccountError, outcome="not_found"): ...


class NameTaken(AccountError, outcome="conflict"): ...


class InvalidValue(AccountError): ...


class DirectoryUnavailable(AccountError, outcome="backend_unavailable"): ...


class SignInRefused(AccountError, outcome="forbidden"): ...


class Directory(Protocol):
    """Every identity backend of people (see Authenticator)."""

    def knows(self, username: str) -> bool:
        """Whether a name is someone's, enabled or not."""
        ...

    def find(self, subject: str) -> tuple[str, Account] | None:
        """The backend and live account whose own name is `subject`."""
        ...


@dataclass(frozen=True)
class Ended:
    """What a change to a user ended."""

    refresh_tokens: int
    ui_sessions: int
    personal_tokens: int = 0


def _existing(name: str, what: str = "user") -> str:
    """A name to look up: one no account could have (a NUL, say, which PostgreSQL
    cannot even compare) names nothing."""
    try:
        return check_name(name)
    except InvalidName:
        raise UnknownAccount(f"no {what} {name[:100]!r}") from None


def parse_id(text: str, what: str = "id") -> int:
    """A row id as typed on a command line or posted by a form: ASCII digits only
    (int() would also take "²", "1_0" or " 1"), at most MAX_ID."""
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        raise InvalidValue(f"{what} {text[:40]!r} is not a number")
    number = int(text)
    if not 0 < number <= MAX_ID:
        raise InvalidValue(f"{what} {number} is out of range")
    return number


def _token_scopes(scopes: Sequence[str], what: str) -> ScopeLimit:
    """A token's scope patterns: 1 to MAX_SCOPES of them, none reaching the admin API."""
    if not 0 < len(scopes) <= MAX_SCOPES:
        raise InvalidValue(f"a {what} has 1 to {MAX_SCOPES} scopes")
    try:
        limit = ScopeLimit.parse(scopes)
    except ScopePatternError as exc:
        raise InvalidValue(f"bad scope: {exc}") from None
    if any(p.type == ADMIN_RESOURCE_TYPE for p in limit.patterns):
        raise InvalidValue(f"a {what} may not hold admin scopes")
    return limit


def _lifetime(ttl: int, most: int) -> dt.timedelta:
    if ttl <= 0:
        raise InvalidValue("ttl must be a positive number of seconds")
    if ttl > most:
        raise InvalidValue(f"ttl exceeds the maximum of {most} s")
    return dt.timedelta(seconds=ttl)


def _check_groups(groups: Sequence[str]) -> None:
    if len(groups) > MAX_GROUPS:
        raise InvalidValue(f"a user has at most {MAX_GROUPS} groups")
    try:
        for group in groups:
            check_name(group, "group name")
    except InvalidName as exc:
        raise InvalidValue(str(exc)) from None


@dataclass(frozen=True, kw_only=True)
class Accounts:
    """Every change to an account, each checked and recorded in the trail (`_act`)."""

    users: UserStore
    refresh_tokens: RefreshTokenStore
    ci_tokens: CITokenStore
    trusts: TrustStore
    ui_sessions: UISessionStore
    personal_tokens: PersonalTokenStore
    # The people's backends, asked whether a name is taken outside the database.
    directory: Directory
    trail: AdminTrail
    clock: Callable[[], dt.datetime]
    bcrypt_cost: int
    ci_max_ttl: int
    personal_max_ttl: int
    # Read-only here: changed in the configuration file only.
    configured_trusts: Sequence[TrustSpec] = ()

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
            self.trail.record(actor, action, target[:255], outcome)

    def _hash(self, password: str) -> str:
        try:
            return hash_password(password, rounds=self.bcrypt_cost)
        except PasswordRejected as exc:
            raise InvalidValue(str(exc)) from None

    # -- users ------------------------------------------------------------

    def list_users(self) -> list[UserInfo]:
        return self.users.list()

    def get_user(self, name: str) -> UserInfo:
        user = self.users.get(_existing(name))
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
            if self.ci_tokens.live_like(name, self.clock()):
                raise NameTaken(f"a CI token is named {name}")
            if self._trust_named(name):
                raise NameTaken(f"a federation trust is named {name}")
            try:
                return self.users.add(name, hashed, groups)
            except UserExists:
                raise NameTaken(
                    f"user {name} already exists (in this or another spelling)"
                ) from None

    def set_password(self, actor: Actor, name: str, password: str) -> Ended:
        """Set the password; revoke the user's refresh and personal tokens, end their web sessions."""
        with self._act(actor, "user.password", name):
            if self.get_user(name).source == "sso":
                raise InvalidValue(f"{name} signs in through the OpenID provider: no password")
            hashed = self._hash(password)
            try:
                self.users.set_password(_existing(name), hashed)
            except UserNotFound:
                raise UnknownAccount(f"no user {name}") from None
            # A new password ends every session the old one opened.
            return self._end_credentials(name)

    def _end_credentials(self, name: str) -> Ended:
        """Revoke database user `name`'s refresh and personal tokens, end their web sessions."""
        now = self.clock()
        return Ended(
            self.refresh_tokens.revoke_subject(name, now),
            self._end_web_sessions(name),
            self._revoke_personal_tokens(name, now),
        )

    def _revoke_personal_tokens(self, name: str, now: dt.datetime) -> int:
        """Those of the database user `name` only: a directory person of a like name keeps theirs."""
        return self.personal_tokens.revoke_owner(name, now, DatabaseBackend.name)

    def _end_web_sessions(self, name: str) -> int:
        """End the web sessions of database user `name`; the number ended.

        Called once the change is stored: a sign-in racing it has its row
        deleted here, or, inserting it later, finds the change when it checks
        its new session again (`open_ui_session`).
        """
        return self.ui_sessions.end_subject(name, DatabaseBackend.name)

    def set_groups(self, actor: Actor, name: str, groups: Sequence[str]) -> UserInfo:
        with self._act(actor, "user.groups", name):
            _check_groups(groups)
            try:
                self.users.set_groups(_existing(name), groups)
            except UserNotFound:
                raise UnknownAccount(f"no user {name}") from None
            if ADMIN_GROUP not in groups:
                # Refused while demoted is not enough: promoted again, the old
                # cookie would be an admin's once more.
                self._end_web_sessions(name)
            return self.get_user(name)

    def set_disabled(self, actor: Actor, name: str, disabled: bool) -> UserInfo:
        with self._act(actor, "user.disable" if disabled else "user.enable", name):
            try:
                self.users.set_disabled(_existing(name), disabled)
            except UserNotFound:
                raise UnknownAccount(f"no user {name}") from None
            if disabled:
                # Ended, not merely refused: enabling the user again opens nothing.
                self._end_web_sessions(name)
                self._revoke_personal_tokens(name, self.clock())
            return self.get_user(name)

    def delete_user(self, actor: Actor, name: str) -> Ended:
        """Delete the user; revoke their refresh and personal tokens, end their web sessions."""
        with self._act(actor, "user.delete", name):
            try:
                self.users.delete(_existing(name))
            except UserNotFound:
                raise UnknownAccount(f"no user {name}") from None
            return self._end_credentials(name)

    def _name_is_free(self, name: str) -> None:
        """NameTaken unless no user, directory entry, CI token or trust goes by `name`."""
        if self.users.exists_like(name) or self.directory.knows(name):
            raise NameTaken(f"{name} is another account's name")
        if self.ci_tokens.live_like(name, self.clock()):
            raise NameTaken(f"a CI token is named {name}")
        if self._trust_named(name):
            raise NameTaken(f"a federation trust is named {name}")

    def sso_sign_in(
        self,
        actor: Actor,
        person: SSOPerson,
        groups: Sequence[str],
        refresh: str | None = None,
    ) -> Identity:
        """The identity of a person the OpenID provider just vouched for, with `groups`
        (what the provider says now) and `refresh`, their sealed refresh token there
        (kept to ask about them again: `sso/recheck.py`). Their first sign-in makes
        their account, named `actor.subject`; later ones find it by the provider's
        subject (so another subject can never sign in to it, whatever name it claims)
        and set its groups: a demotion at the provider counts at once. Audited as
        `ui.signin` with the provider's subject as the target.
        """
        existing = self.users.sso_account(person)
        name = existing or actor.subject
        with self._act(dataclasses.replace(actor, subject=name), "ui.signin", person.subject):
            _check_groups(groups)
            if existing is None:
                try:
                    check_name(name)
                except InvalidName as exc:
                    raise InvalidValue(str(exc)) from None
                self._name_is_free(name)
                # No one is told this password: the account signs in through the provider only.
                unusable = self._hash(secrets.token_urlsafe(32))
                try:
                    self.users.add(
                        name, unusable, groups, sso=person, sso_refresh=refresh, now=self.clock()
                    )
                except UserExists:
                    raise NameTaken(f"{name} is another account's name") from None
            else:
                self._sso_vouched(name, groups, refresh)
            found = self.directory.find(name)
            if found is None or found[0] != DatabaseBackend.name:
                raise SignInRefused(
                    f"the account {name} is disabled or shadowed by another backend"
                )
            backend, account = found
            return account.identity(backend)

    def _sso_vouched(self, name: str, groups: Sequence[str] | None, refresh: str | None) -> None:
        was_admin = ADMIN_GROUP in self.get_user(name).groups
        if groups is not None:
            self.users.set_groups(name, groups)
        self.users.vouched(name, self.clock(), refresh)
        if was_admin and groups is not None and ADMIN_GROUP not in groups:
            self._end_web_sessions(name)

    def sso_rechecked(
        self, actor: Actor, name: str, groups: Sequence[str] | None, refresh: str | None
    ) -> None:
        """The provider still vouches for person `name`, with `groups` now (None: as
        they were) and perhaps a new sealed refresh token. Audited as `sso.recheck`."""
        with self._act(actor, "sso.recheck", name):
            if groups is not None:
                _check_groups(groups)
            try:
                self._sso_vouched(name, groups, refresh)
            except UserNotFound:
                raise UnknownAccount(f"no user {name}") from None

    def sso_gone(self, actor: Actor, name: str) -> Ended:
        """The provider no longer vouches for person `name`: their refresh and personal
        tokens are revoked, their web sessions ended, their refresh token at the provider
        forgotten. The account stays (its name is theirs, should they come back through
        the provider), refused until they sign in through it again. Audited as
        `sso.recheck` refused."""
        try:
            # First: from here on no credential of theirs works, so none minted while
            # the rest are revoked outlives this.
            self.users.unvouched(name)
        except UserNotFound:
            raise UnknownAccount(f"no user {name}") from None
        ended = self._end_credentials(name)
        self.trail.record(actor, "sso.recheck", name[:255], "bad_credentials")
        return ended

    # -- CI tokens ----------------------------------------------------------

    def list_ci_tokens(self) -> list[CITokenInfo]:
        return self.ci_tokens.list()

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
            limit = _token_scopes(scopes, "CI token")
            lifetime = _lifetime(ttl, self.ci_max_ttl)
            if len(description) > MAX_DESCRIPTION:
                raise InvalidValue(f"the description has more than {MAX_DESCRIPTION} characters")
            try:
                check_name(name, "CI token name")
            except InvalidName as exc:
                raise InvalidValue(str(exc)) from None
            # A token named like a user would issue tokens in that user's name.
            if self.users.exists_like(name) or self.directory.knows(name):
                raise NameTaken(f"{name} is a user's name")
            if self._trust_named(name):
                raise NameTaken(f"a federation trust is named {name}")
            now = self.clock()
            try:
                return self.ci_tokens.create(
                    name,
                    limit,
                    now + lifetime,
                    now,
                    description=description,
                    created_by=actor.subject,
                )
            except CITokenExists:
                raise NameTaken(f"a live CI token named {name} exists; revoke it first") from None

    def revoke_ci_token(self, actor: Actor, name: str) -> None:
        with self._act(actor, "ci_token.revoke", name):
            if not self.ci_tokens.revoke(_existing(name, "CI token"), self.clock()):
                raise UnknownAccount(f"no live CI token named {name}")

    # -- personal access tokens ---------------------------------------------------

    def list_personal_tokens(self, owner: str | None = None) -> list[PersonalTokenInfo]:
        """Every person's tokens, or `owner`'s (any spelling of the name); never a secret."""
        return self.personal_tokens.list(None if owner is None else _existing(owner))

    def create_personal_token(
        self, actor: Actor, owner: str, name: str, scopes: Sequence[str], ttl: int
    ) -> tuple[PersonalTokenInfo, str]:
        """A new token of the person `owner` and its secret (shown once).

        Whether `actor` may act for `owner` is the front end's to decide: a
        person for themselves on their own page, an admin for anyone.
        """
        with self._act(actor, "personal_token.create", f"{owner}/{name}"):
            limit = _token_scopes(scopes, "personal token")
            lifetime = _lifetime(ttl, self.personal_max_ttl)
            try:
                check_name(name, "token name")
            except InvalidName as exc:
                raise InvalidValue(str(exc)) from None
            person = self._person(owner)
            now = self.clock()
            if self.personal_tokens.count_live(person.name, now) >= MAX_PERSONAL_TOKENS:
                raise InvalidValue(f"a person holds at most {MAX_PERSONAL_TOKENS} live tokens")
            try:
                return self.personal_tokens.create(
                    person, name, limit, now + lifetime, now, created_by=actor.subject
                )
            except PersonalTokenExists:
                raise NameTaken(
                    f"{person.name} has a live token named {name}; revoke it first"
                ) from None

    def _person(self, name: str) -> Owner:
        """The account a person's token is bound to: whoever the backends find by `name` now."""
        found = self.directory.find(_existing(name, "person"))
        if found is None or found[1].kind != "user":
            raise UnknownAccount(f"no person {name[:100]!r} (or disabled)")
        backend, account = found
        return Owner(account.name, backend, account.account_key)

    def revoke_personal_token(self, actor: Actor, owner: str, name: str) -> None:
        with self._act(actor, "personal_token.revoke", f"{owner}/{name}"):
            revoked = self.personal_tokens.revoke(
                _existing(owner, "person"), _existing(name, "token"), self.clock()
            )
            if not revoked:
                raise UnknownAccount(f"{owner} has no live token named {name}")

    # -- federation trusts -----------------------------------------------------

    def list_trusts(self) -> list[tuple[TrustSpec, str]]:
        """Every trust, with where it is defined: `config` (read-only here) or `database`."""
        configured = [(spec, "config") for spec in self.configured_trusts]
        return configured + [(TrustSpec(**row), "database") for row in self.trusts.list()]

    def _trust_named(self, name: str) -> bool:
        key = name_key(name)
        return any(name_key(t.name) == key for t in self.configured_trusts) or (
            self.trusts.exists_like(name)
        )

    def create_trust(self, actor: Actor, spec: TrustSpec) -> TrustSpec:
        with self._act(actor, "trust.create", spec.name):
            try:
                spec.build()
                if spec.ca_file is not None:
                    check_ca_file(spec.ca_file)
            except InvalidTrust as exc:
                raise InvalidValue(str(exc)) from None
            if any(name_key(t.name) == name_key(spec.name) for t in self.configured_trusts):
                raise NameTaken(f"the configuration defines a trust named {spec.name}")
            # The trust's name is the username pipelines log in with: it is no one else's.
            if (
                self.users.exists_like(spec.name)
                or self.directory.knows(spec.name)
                or self.ci_tokens.live_like(spec.name, self.clock())
            ):
                raise NameTaken(f"{spec.name} is a user's or a CI token's name")
            try:
                self.trusts.add(spec.fields(), self.clock(), actor.subject)
            except TrustExists:
                raise NameTaken(f"a trust named {spec.name} exists") from None
            return spec

    def delete_trust(self, actor: Actor, name: str) -> None:
        with self._act(actor, "trust.delete", name):
            if any(t.name == name for t in self.configured_trusts):
                raise InvalidValue(f"trust {name} is defined in the configuration; remove it there")
            if not self.trusts.delete(_existing(name, "trust")):
                raise UnknownAccount(f"no trust {name}")

    # -- refresh tokens -------------------------------------------------------

    def list_refresh_tokens(self, user: str | None = None) -> list[RefreshTokenInfo]:
        return self.refresh_tokens.list(None if user is None else _existing(user))

    def revoke_refresh_tokens(self, actor: Actor, user: str) -> int:
        """Revoke every live refresh token of `user`; the number revoked."""
        with self._act(actor, "refresh_token.revoke", user):
            return self.refresh_tokens.revoke_subject(_existing(user), self.clock())

    def revoke_refresh_token(self, actor: Actor, token_id: int) -> None:
        with self._act(actor, "refresh_token.revoke", f"#{token_id}"):
            if not 0 < token_id <= MAX_ID:
                raise InvalidValue(f"{str(token_id)[:30]} is not a refresh token id")
            if not self.refresh_tokens.revoke(token_id, self.clock()):
                raise UnknownAccount(f"no live refresh token {token_id}")

    # -- web-page sessions ------------------------------------------------------

    def open_ui_session(
        self, identity: Identity, lifetime: dt.timedelta
    ) -> tuple[str, Session] | None:
        """A web session for a person who just proved who they are: the cookie value and
        the session, or None if the account changed meanwhile. Blocking.

        Bound to the account that proved itself (its backend and account key),
        not merely to its name. Checked again once its row exists: a
        password change, disable, demotion or delete that ended the user's
        sessions while this sign-in was between its password check and its
        insert would otherwise have missed this one.
        """
        cookie, session = self.ui_sessions.create(
            identity.subject,
            identity.backend,
            identity.account_key,
            self.clock(),
            lifetime,
            admin=ADMIN_GROUP in identity.groups,
        )
        if self.ui_session(cookie) is None:
            self.ui_sessions.end(cookie)
            return None
        return cookie, session

    def ui_session(self, cookie: str) -> tuple[Session, Identity] | None:
        """The live session this cookie names and its person as the backends see them now.

        A session whose account is gone, disabled, no longer an admin (if
        an admin opened it), or now another account of its name (deleted and
        created again, given a new password, or found in another backend) is
        ended here, by whichever instance sees it first: restoring the account
        brings nothing back. Whether the person may see an admin page is the
        page's to check (their groups now). Blocking.
        """
        session = self.ui_sessions.get(cookie, self.clock())
        if session is None:
            return None
        try:
            found = self.directory.find(session.subject)
        except BackendUnavailable:
            return None  # refused for now: nothing says the account changed
        if found is not None:
            backend, account = found
            same = (backend, account.account_key) == (session.backend, session.account_key)
            demoted = session.admin and ADMIN_GROUP not in account.groups
            if same and account.kind == "user" and not demoted:
                return session, account.identity(backend)
        self.ui_sessions.end(cookie)
        return None

    def close_ui_session(self, cookie: str) -> None:
        """Signing out: the session ends on every instance."""
        self.ui_sessions.end(cookie)

    def list_ui_sessions(self, user: str | None = None) -> list[SessionInfo]:
        """Live web sessions, oldest first; of `user` (any spelling of the name) if given."""
        return self.ui_sessions.list(self.clock(), None if user is None else _existing(user))

    def end_ui_session(self, actor: Actor, session_id: int) -> None:
        with self._act(actor, "ui_session.end", f"#{session_id}"):
            if not (0 < session_id <= MAX_ID and self.ui_sessions.end_id(session_id, self.clock())):
                raise UnknownAccount(f"no live web session {session_id}")

    def end_ui_sessions(self, actor: Actor, user: str) -> int:
        """End every web session of `user` (any spelling, any backend); the number ended."""
        with self._act(actor, "ui_session.end", user):
            return self.ui_sessions.end_subject(_existing(user))

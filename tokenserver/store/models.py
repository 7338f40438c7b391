"""SQLAlchemy models. Secrets are stored only as hashes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "AuditEvent",
    "Base",
    "CIToken",
    "DeviceCode",
    "FederationTrust",
    "LoginFailure",
    "PersonalToken",
    "RefreshToken",
    "SSOLogin",
    "ScopedToken",
    "UISession",
    "User",
    "UserGroup",
]


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else value.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    # names.name_key(name): one account per spelling of a name, enforced here.
    name_key: Mapped[str] = mapped_column(String(255), unique=True)
    # Random, never reused (SQLite may give a deleted user's row id to the next
    # user): what is bound to this account (a web session, a refresh token)
    # holds it, through users.account_key, so a later user of the name is a
    # stranger to it.
    account_id: Mapped[str] = mapped_column(String(32), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # "local" (a password set here) or "sso" (signs in through the OpenID provider only).
    source: Mapped[str] = mapped_column(String(16), default="local", server_default="local")
    # A person of the provider: the SHA-256 of its issuer and their `sub`, so no other
    # subject of the provider (nor another provider) can sign in to this account.
    sso_key: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    sso_subject: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # When the provider last vouched for them (a sign-in through it, or a recheck).
    sso_checked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The provider's refresh token, sealed (`sso/sealed.py`): how the provider is asked
    # about them again without them (`sso/recheck.py`); none if it gave none.
    sso_refresh: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Until when one instance is asking the provider about them (a lease, see 0011).
    sso_recheck_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    groups: Mapped[list[UserGroup]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="UserGroup.name"
    )


class UserGroup(Base):
    __tablename__ = "user_groups"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(255), primary_key=True)


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    subject: Mapped[str] = mapped_column(String(255), index=True)
    # The account it was issued to: its backend and Identity.account_key (NULL
    # where the backend has none). A NULL backend: issued before either was
    # recorded, so only the subject is checked.
    backend: Mapped[str | None] = mapped_column(String(32), nullable=True)
    account_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    service: Mapped[str] = mapped_column(String(255))
    client_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ScopedToken:
    """What every token with scopes of its own has (CI and personal tokens): the secret
    only hashed, an expiry, its last use."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scopes: Mapped[str] = mapped_column(Text)  # space-separated scope patterns
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(255), default="")
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)


class CIToken(ScopedToken, Base):
    """A robot credential: a name, scope patterns, an expiry; the secret only hashed."""

    __tablename__ = "ci_tokens"

    name: Mapped[str] = mapped_column(String(255), index=True)
    # name_key(name) while the token may be live (cleared on revoke, and by the next
    # create once expired): at most one live token per name, enforced here.
    live_key: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    description: Mapped[str] = mapped_column(String(1024), default="")


class AuditEvent(Base):
    """One token request or administrative act: who, from where, what, and how it ended."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_subject_at", "subject", "at"),
        Index("ix_audit_events_action_at", "action", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    # "token" for a token request, else the act ("user.create", "ci_token.revoke", ...).
    action: Mapped[str] = mapped_column(String(64), default="token")
    # What an act was done to (a user or token name); empty for token requests.
    target: Mapped[str] = mapped_column(String(255), default="")
    # What a login proved beyond the subject (an ID token's trust, iss, sub, jti and
    # the claims its trust checked), as a JSON object; never a secret.
    detail: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    backend: Mapped[str] = mapped_column(String(32))
    via: Mapped[str] = mapped_column(String(32))
    client_ip: Mapped[str] = mapped_column(String(64))
    user_agent: Mapped[str] = mapped_column(String(512))
    service: Mapped[str] = mapped_column(String(255))
    requested: Mapped[str] = mapped_column(Text)
    granted: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(32), index=True)


class LoginFailure(Base):
    """One failed login, counted against one key (`account:NAME` or `address:IP`).

    Rows are only ever inserted (so failures racing on several instances all
    count) and deleted: by a successful login (its account's rows) or once
    they are older than the throttle window.
    """

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_at", "key", "at"),)

    # Failures come and go for the life of the database: 32 bits could run out.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    key: Mapped[str] = mapped_column(String(320))
    # Seconds since the epoch, by the clock of the instance that saw the failure.
    at: Mapped[float] = mapped_column(Double, index=True)


class UISession(Base):
    """A person signed in to the web page; the cookie's value is stored only hashed."""

    __tablename__ = "ui_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    subject: Mapped[str] = mapped_column(String(255))
    # names.name_key(subject): an admin ending "Bob"'s sessions ends bob's.
    subject_key: Mapped[str] = mapped_column(String(255), index=True)
    backend: Mapped[str] = mapped_column(String(32))
    # Identity.account_key of the person who signed in (NULL where the backend
    # has none): a user deleted and created again, or given a new password, is
    # not the account this session signed in.
    account_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    # Whether it was opened by a member of `admin`: such a session ends when they
    # leave the group, whichever backend says so, so promoting them again brings
    # no old cookie back as an admin's.
    admin: Mapped[bool] = mapped_column(Boolean, default=False)


class FederationTrust(Base):
    """A federation trust added through the admin API or the CLI (config trusts are not here)."""

    __tablename__ = "federation_trusts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    name_key: Mapped[str] = mapped_column(String(255), unique=True)
    issuer: Mapped[str] = mapped_column(String(1024))
    audience: Mapped[str] = mapped_column(String(1024))
    scopes: Mapped[str] = mapped_column(Text)  # space-separated scope patterns
    claims: Mapped[str] = mapped_column(Text)  # a JSON object: claim -> pattern
    jwks_uri: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    jwks_file: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    ca_file: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    max_age: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(255))


class DeviceCode(Base):
    """A device's request to be logged in (RFC 8628), until the person at the page
    decides and the device collects its refresh token; both codes only hashed."""

    __tablename__ = "device_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Seconds between polls, raised by each `slow_down`; no poll before `next_poll_at`.
    interval: Mapped[int] = mapped_column(Integer)
    next_poll_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # pending, approved, denied, spent: each step a compare-and-set on this column.
    status: Mapped[str] = mapped_column(String(16))
    client_id: Mapped[str] = mapped_column(String(255))
    service: Mapped[str] = mapped_column(String(255))
    scopes: Mapped[str] = mapped_column(Text)  # space-separated, as requested
    client_ip: Mapped[str] = mapped_column(String(64))
    # The address as the throttle counts it (an IPv6 one: its network): what the cap on
    # one client's live codes is kept by.
    client_net: Mapped[str] = mapped_column(String(64), index=True)
    user_agent: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    # The account that approved it, bound as a refresh token is (see RefreshToken).
    subject: Mapped[str | None] = mapped_column(String(255), nullable=True)
    backend: Mapped[str | None] = mapped_column(String(32), nullable=True)
    account_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SSOLogin(Base):
    """A sign-in through the OpenID provider under way: between the redirect to the
    provider and its answer, on whichever instance that comes back to. Single use: the
    answer deletes the row it takes."""

    __tablename__ = "sso_logins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The SHA-256 of the `state` the browser carries (in the URL and a cookie).
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    nonce: Mapped[str] = mapped_column(String(64))
    # PKCE's code verifier: sent to the provider's token endpoint with the code, once.
    code_verifier: Mapped[str] = mapped_column(String(128))
    # Where the browser goes once signed in: a path on this server.
    return_to: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class PersonalToken(ScopedToken, Base):
    """A person's own credential: a name, scope patterns, an expiry; the secret only hashed."""

    __tablename__ = "personal_tokens"
    __table_args__ = (UniqueConstraint("owner_key", "live_key"),)

    # The person's own name (as their backend spells it) and names.name_key of it.
    owner: Mapped[str] = mapped_column(String(255))
    owner_key: Mapped[str] = mapped_column(String(255), index=True)
    # The account it was made for: the person's backend and Identity.account_key
    # (NULL where the backend has none). A later account of the name, or the
    # same one with a new password, is a stranger to it.
    backend: Mapped[str] = mapped_column(String(32))
    account_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    name: Mapped[str] = mapped_column(String(255))
    # name_key(name) while the token may be live (cleared on revoke, and by the
    # owner's next create once expired): one live token per name and owner.
    live_key: Mapped[str | None] = mapped_column(String(255), nullable=True)

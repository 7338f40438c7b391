"""The composition root: every long-lived object of the token server, wired in one place.

The app's lifespan opens `Services` (`open_services`) and keeps it in
`app.state.services`, where each route reaches it through
`routes.common.services`. The CLI opens `Administration`
(`open_administration`): the part of the same wiring that changes accounts
and reads the trail. That part needs no signing key and starts no thread, so
`keys generate` and `user add` work before the first key exists, and a
command does not start the audit writer (or its purge).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from tokenserver.accounts import Accounts
from tokenserver.audit import AdminTrail, AuditLog
from tokenserver.authn.base import Backend
from tokenserver.authn.cache import CredentialCache
from tokenserver.authn.chain import Authenticator
from tokenserver.authn.configured import build_backends
from tokenserver.authz.acl import DEFAULT_ACL, ACLPolicy
from tokenserver.authz.acl_file import ACLFile
from tokenserver.authz.policy import Explaining
from tokenserver.config import Config
from tokenserver.federation.trusts import TrustSpec
from tokenserver.store.audit import AuditStore
from tokenserver.store.ci_tokens import CITokenStore
from tokenserver.store.db import Database
from tokenserver.store.personal_tokens import PersonalTokenStore
from tokenserver.store.refresh_tokens import RefreshTokenStore
from tokenserver.store.trusts import TrustStore
from tokenserver.store.ui_sessions import UISessionStore
from tokenserver.store.users import UserStore

if TYPE_CHECKING:
    from tokenserver.authn.federated import FederatedBackend
    from tokenserver.device import DeviceLogins
    from tokenserver.grants import GrantService
    from tokenserver.keys import KeySet
    from tokenserver.metrics import TokenMetrics
    from tokenserver.sso.recheck import Rechecker
    from tokenserver.sso.signin import SSO
    from tokenserver.throttle import LoginThrottle

__all__ = [
    "Administration",
    "Clock",
    "Services",
    "build_policy",
    "migrate",
    "open_administration",
    "open_services",
    "rechecker",
    "utcnow",
]

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Administration:
    """What changes accounts and reads the trail: the admin API, the web page and the CLI."""

    config: Config
    clock: Clock
    accounts: Accounts
    # Administrative acts, each written before it is answered.
    trail: AdminTrail
    audit_reader: AuditStore
    # Owned here and closed with the rest; the front ends go through the services above.
    database: Database


@dataclass(frozen=True)
class Services(Administration):
    """And what grants tokens: everything a request handler of one app works with."""

    keys: KeySet
    # The published key set, rendered once.
    jwks: dict[str, Any]
    grants: GrantService
    # Every backend in order, as a token request meets them; the admin API's
    # Bearer check asks it whether a token's subject still qualifies.
    authenticator: Authenticator
    # The rules the grants follow, which also say why (a person's own page shows it).
    policy: Explaining
    # Token requests' rows, written in batches off the request path.
    audit: AuditLog
    # Made with the app, before this: its middleware observes every request.
    metrics: TokenMetrics
    # Devices' requests for codes, and the web page's people deciding them.
    devices: DeviceLogins
    # Signing people in through the OpenID provider, if `sso` is configured.
    sso: SSO | None


_A = TypeVar("_A", bound=Administration)


def build_policy(config: Config) -> Explaining:
    """The configured rules; a bad rules file raises ConfigError here, before serving."""
    if config.acl_file is not None:
        return ACLFile(config.acl_file)
    return ACLPolicy(DEFAULT_ACL if config.acl is None else config.acl)


def migrate(config: Config) -> None:
    """Bring the schema up to date once, before any worker starts: workers must not race at it."""
    db = Database(config.database.url, pool_size=1)
    try:
        db.migrate()
    finally:
        db.dispose()


@dataclass(frozen=True)
class _Records:
    """The database, its stores and the people's backends over them: opened once, shared."""

    database: Database
    users: UserStore
    refresh_tokens: RefreshTokenStore
    ci_tokens: CITokenStore
    personal_tokens: PersonalTokenStore
    trusts: TrustStore
    ui_sessions: UISessionStore
    audit: AuditStore
    # htpasswd, database, LDAP: one set for the accounts service and the token
    # path, over the one `users`, so a change the accounts service makes there
    # reaches the database backend's remembered rows at once.
    people: list[Backend]
    configured_trusts: list[TrustSpec]


def _open_records(config: Config, exits: ExitStack, clock: Clock) -> _Records:
    db = Database(config.database.url, pool_size=config.database.pool_size)
    exits.callback(db.dispose)
    db.migrate()
    users = UserStore(db)
    people = build_backends(config, users, clock)
    for backend in people:
        exits.callback(backend.close)
    return _Records(
        database=db,
        users=users,
        refresh_tokens=RefreshTokenStore(db),
        ci_tokens=CITokenStore(db),
        personal_tokens=PersonalTokenStore(db),
        trusts=TrustStore(db),
        ui_sessions=UISessionStore(db),
        audit=AuditStore(db),
        people=people,
        configured_trusts=[trust.spec() for trust in config.federation],
    )


def _administration(
    kind: type[_A], config: Config, records: _Records, clock: Clock, **more: Any
) -> _A:
    """An `Administration` (or the `Services` that extend it, given the rest as `more`)."""
    trail = AdminTrail(records.audit, clock)
    accounts = Accounts(
        users=records.users,
        refresh_tokens=records.refresh_tokens,
        ci_tokens=records.ci_tokens,
        personal_tokens=records.personal_tokens,
        directory=Authenticator(records.people, CredentialCache(0), config.users.bcrypt_cost),
        trail=trail,
        clock=clock,
        bcrypt_cost=config.users.bcrypt_cost,
        ci_max_ttl=config.ci_tokens.max_ttl,
        personal_max_ttl=config.personal_tokens.max_ttl,
        trusts=records.trusts,
        ui_sessions=records.ui_sessions,
        configured_trusts=records.configured_trusts,
    )
    return kind(
        config=config,
        clock=clock,
        accounts=accounts,
        trail=trail,
        audit_reader=records.audit,
        database=records.database,
        **more,
    )


@contextmanager
def open_administration(config: Config, *, clock: Clock = utcnow) -> Iterator[Administration]:
    """The CLI's services, closed (backends, then the database) when the block ends."""
    with ExitStack() as exits:
        yield _administration(Administration, config, _open_records(config, exits, clock), clock)


def rechecker(admin: Administration) -> Rechecker | None:
    """What asks the OpenID provider about its people again (`sso/recheck.py`), over the
    app's sign-in service or, for the CLI, one of its own; None without `sso`."""
    from tokenserver.sso.recheck import Rechecker
    from tokenserver.sso.signin import SSO
    from tokenserver.store.sso_logins import SSOLoginStore

    sso = admin.sso if isinstance(admin, Services) else None
    if sso is None and admin.config.sso is not None:
        sso = SSO(admin.config.sso, SSOLoginStore(admin.database), admin.clock)
    return None if sso is None else Rechecker(sso, admin.accounts, admin.clock)


def _token_authenticator(
    config: Config, records: _Records, clock: Clock, exits: ExitStack
) -> tuple[Authenticator, FederatedBackend]:
    """Every backend a token request meets, in order, and the federation among them."""
    from tokenserver.authn.ci_tokens import CITokenBackend
    from tokenserver.authn.federated import FederatedBackend
    from tokenserver.authn.personal_tokens import PersonalTokenBackend
    from tokenserver.federation.verify import Trusts

    federation = FederatedBackend(Trusts(records.configured_trusts, records.trusts, clock))
    people = Authenticator(records.people, CredentialCache(0), config.users.bcrypt_cost)
    # CI tokens, personal tokens and trusts first: only passwords shaped
    # like their secrets (a CI secret, a personal one, a JWT) go there.
    backends: list[Backend] = [
        CITokenBackend(records.ci_tokens, clock),
        PersonalTokenBackend(records.personal_tokens, people, clock),
        federation,
    ]
    for backend in backends:
        exits.callback(backend.close)
    authenticator = Authenticator(
        [*backends, *records.people],
        CredentialCache(config.users.credential_cache_ttl),
        config.users.bcrypt_cost,
    )
    return authenticator, federation


def _throttle(config: Config, records: _Records, clock: Clock) -> LoginThrottle:
    from tokenserver.store.login_failures import LoginFailureStore
    from tokenserver.throttle import LoginThrottle

    return LoginThrottle(
        LoginFailureStore(records.database),
        config.throttle.account_failures,
        config.throttle.address_failures,
        config.throttle.window,
        clock=lambda: clock().timestamp(),
        ipv6_prefix=config.throttle.ipv6_prefix,
    )


@contextmanager
def open_services(
    config: Config, *, policy: Explaining, metrics: TokenMetrics, clock: Clock = utcnow
) -> Iterator[Services]:
    """One app's services; when the block ends the audit rows are written, then all is closed."""
    # Imported here, not above: a CLI command, which opens only the
    # administration, starts faster without the token path's modules.
    from tokenserver.device import DeviceLogins
    from tokenserver.grants import GrantService
    from tokenserver.issuer import Issuer
    from tokenserver.keys import load_keys
    from tokenserver.sso.signin import SSO
    from tokenserver.store.device_codes import DeviceCodeStore
    from tokenserver.store.sso_logins import SSOLoginStore

    with ExitStack() as exits:
        records = _open_records(config, exits, clock)
        keys = load_keys(config.token.keys_dir, config.token.algorithm, config.token.signing_key)
        authenticator, federation = _token_authenticator(config, records, clock, exits)
        audit = AuditLog(records.audit, dt.timedelta(days=config.audit.retention_days), clock)
        exits.callback(audit.close)
        # Wrong passwords and wrong user codes count in one place: a guesser's address is one.
        throttle = _throttle(config, records, clock)
        device_codes = DeviceCodeStore(records.database)
        grants = GrantService(
            authenticator=authenticator,
            policy=policy,
            issuer=Issuer(keys, config.token.issuer, config.token.expiration, config.token.x5c),
            refresh_tokens=records.refresh_tokens,
            services=frozenset(config.token.services),
            refresh_lifetime=dt.timedelta(seconds=config.token.refresh_expiration),
            clock=clock,
            throttle=throttle,
            metrics=metrics,
            audit=audit,
            federation=federation,
            device_codes=device_codes,
        )
        devices = DeviceLogins(
            codes=device_codes,
            throttle=throttle,
            trail=AdminTrail(records.audit, clock),
            clock=clock,
            services=config.token.services,
            code_ttl=config.device.code_ttl,
            interval=config.device.interval,
        )
        yield _administration(
            Services,
            config,
            records,
            clock,
            grants=grants,
            authenticator=authenticator,
            policy=policy,
            keys=keys,
            jwks=keys.jwks(),
            audit=audit,
            metrics=metrics,
            devices=devices,
            sso=None
            if config.sso is None
            else SSO(config.sso, SSOLoginStore(records.database), clock),
        )

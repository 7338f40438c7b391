"""From an authenticated identity and requested scopes to a signed grant.

Shared by GET /token and POST /token; the routes only parse and respond.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from tokenserver import context
from tokenserver.accounts import ADMIN_RESOURCE_TYPE
from tokenserver.authn.base import BackendUnavailable, BadCredentials, Identity
from tokenserver.authn.chain import Authenticator
from tokenserver.authz.policy import Policy, Requester
from tokenserver.errors import (
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    TemporarilyUnavailable,
    TooManyRequests,
)
from tokenserver.issuer import IssuedToken, Issuer
from tokenserver.metrics import TokenMetrics
from tokenserver.names import name_key
from tokenserver.scope import Access, ScopeError, merge, parse_scopes
from tokenserver.secret import Secret
from tokenserver.store.ci_tokens import CITokenStore, looks_like_ci_secret
from tokenserver.store.refresh_tokens import RefreshTokenStore
from tokenserver.throttle import LoginThrottle

__all__ = ["Grant", "GrantService"]

log = logging.getLogger(__name__)

MAX_SCOPES = 100


@dataclass(frozen=True)
class Grant:
    token: IssuedToken
    granted: tuple[Access, ...]
    refresh_token: str | None


class GrantService:
    def __init__(
        self,
        *,
        authenticator: Authenticator,
        policy: Policy,
        issuer: Issuer,
        refresh_tokens: RefreshTokenStore,
        services: Sequence[str],
        refresh_lifetime: dt.timedelta,
        clock: Callable[[], dt.datetime],
        issuer_name: str,
        ci_tokens: CITokenStore,
        throttle: LoginThrottle,
        metrics: TokenMetrics,
    ) -> None:
        self.issuer_name = issuer_name
        self.ci_tokens = ci_tokens
        self.throttle = throttle
        self.metrics = metrics
        self.authenticator = authenticator
        self.policy = policy
        self.issuer = issuer
        self.refresh_tokens = refresh_tokens
        self.services = frozenset(services)
        self.refresh_lifetime = refresh_lifetime
        self.clock = clock

    def check_service(self, service: str) -> str:
        if service not in self.services:
            raise InvalidRequest("unknown service")
        return service

    def parse_requested(self, values: Sequence[str]) -> tuple[Access, ...]:
        try:
            requested = parse_scopes(values)
        except ScopeError as exc:
            raise InvalidScope(f"malformed scope: {exc}") from None
        if len(requested) > MAX_SCOPES:
            raise InvalidScope(f"more than {MAX_SCOPES} scopes requested")
        merged = tuple(merge(requested))
        context.REQUESTED.set(merged)
        return merged

    def authenticate(self, username: str, password: Secret, ip: str | None = None) -> Identity:
        """Blocking (may run bcrypt or ask a directory): call from a worker thread.

        Throttled accounts and addresses are refused before the password is
        looked at. Every spelling of a name counts against one account, whatever
        the backend makes of the variant. Raises BadCredentials, TooManyRequests
        or TemporarilyUnavailable.
        """
        account = name_key(username)
        wait = self.throttle.retry_after(account, ip)
        if wait:
            raise TooManyRequests(wait)
        try:
            identity = self._check(username, password, ip)
        except BadCredentials as exc:
            self.throttle.failure(account, ip)
            self.metrics.login(exc.backend or "none", "failure")
            raise
        except BackendUnavailable as exc:
            self.metrics.login("unavailable", "failure")
            log.warning("identity backend unavailable", extra={"reason": str(exc)})
            raise TemporarilyUnavailable("the identity backend is unavailable; retry") from None
        self.throttle.success(account)
        self.metrics.login(identity.backend, "success")
        return identity

    def _check(self, username: str, password: Secret, ip: str | None) -> Identity:
        if looks_like_ci_secret(password.reveal()):
            try:
                token = self.ci_tokens.authenticate(username, password.reveal(), self.clock(), ip)
            except SQLAlchemyError:
                raise BackendUnavailable("the CI token database cannot be reached") from None
            if token is not None:
                return Identity(token.name, "ci", frozenset(), "ci-token", limit=token.scopes)
        return self.authenticator.authenticate(username, password)

    def identity_for_refresh(self, value: Secret, service: str) -> Identity:
        """Blocking: resolve a refresh token to the identity it was issued to."""
        now = self.clock()
        info = self.refresh_tokens.use(value.reveal(), now)
        if info is None:
            raise InvalidGrant("the refresh token is invalid, expired or revoked")
        if info.service != service:
            raise InvalidGrant("the refresh token was issued for another service")
        try:
            found = self.authenticator.find(info.subject)
        except BackendUnavailable:
            raise TemporarilyUnavailable("the identity backend is unavailable; retry") from None
        if found is None:
            raise InvalidGrant("the refresh token's account no longer exists or is disabled")
        backend, account = found
        return Identity(account.name, "user", account.groups, backend)

    def grant(
        self,
        identity: Identity,
        service: str,
        requested: Sequence[Access],
        *,
        via: str,
        ip: str | None = None,
    ) -> IssuedToken:
        """Filter and sign; `via` names how the caller proved who it is (for the log)."""
        context.ACCOUNT.set(identity.subject)
        if identity.limit is not None:
            requested = identity.limit.narrow(requested)
        granted = tuple(self.policy.filter(Requester(identity, service, ip), requested))
        if identity.kind == "ci":
            # Whatever the rules say: a CI token never administers the server.
            granted = tuple(a for a in granted if a.type != ADMIN_RESOURCE_TYPE)
        context.GRANTED.set(granted)
        token = self.issuer.issue(identity.subject, service, granted, self.clock())
        log.info(
            "token issued",
            extra={"kind": identity.kind, "backend": identity.backend, "via": via},
        )
        return token

    def new_refresh_token(self, identity: Identity, service: str, client_id: str) -> str:
        """Blocking: store a new refresh token for this identity and service."""
        if identity.kind != "user":
            raise InvalidRequest("offline tokens need credentials")
        return self.refresh_tokens.issue(
            identity.subject, service, client_id, self.refresh_lifetime, self.clock()
        )

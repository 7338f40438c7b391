"""The token grant as one call: a parsed token request in, a signed grant or a typed refusal out.

The order of the protocol lives here and nowhere else: the service must be
ours, the scopes must parse, the caller proves who it is (a password, a CI
token's secret, a person's own token, a pipeline's OIDC ID token or a
refresh token; throttled before any password is looked at), `account` must
name that caller, the policy filters what was asked for (and a pipeline, by
CI token or ID token, never gets an `admin` scope), the token is signed, and
a refresh token is issued only to a person who asked to stay logged in with
their password. Every
request, whatever its fate, leaves one audit row and one metrics count.
The routes only parse HTTP and turn a refusal into the answer their flavour
of the protocol expects (`errors.from_refusal`).

The grant runs on the event loop: what it needs from memory (a remembered
password check, the throttle's recent reads, the rules, the signing key)
costs it tens of microseconds there, and only what blocks — bcrypt, a
directory, the database — goes to a worker thread (`run_sync`), one hop for
each such step, none on the warm path.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from anyio.to_thread import run_sync
from sqlalchemy.exc import SQLAlchemyError

from authcore.cache import Cache
from authcore.identity import Identity
from authcore.scope import Access, ScopeError, format_scopes, merge, parse_scopes
from tokenserver import context
from tokenserver.accounts import ADMIN_RESOURCE_TYPE
from tokenserver.audit import AuditLog
from tokenserver.authn.base import BackendUnavailable, BadCredentials
from tokenserver.authn.chain import Authenticator
from tokenserver.authn.federated import BACKEND_NAME as FEDERATION
from tokenserver.authn.federated import FederatedBackend
from tokenserver.authz.policy import Policy, Requester
from tokenserver.issuer import IssuedToken, Issuer
from tokenserver.metrics import TokenMetrics
from tokenserver.names import name_key
from tokenserver.refusals import (
    AccessDenied,
    AccountMismatch,
    AuthorizationPending,
    BackendDown,
    BadLogin,
    CredentialsNeeded,
    DeviceCodeExpired,
    InvalidDeviceCode,
    InvalidRefreshToken,
    InvalidSubjectToken,
    MalformedScope,
    Refused,
    SlowDown,
    Throttled,
    UnknownService,
)
from tokenserver.secret import Secret
from tokenserver.store.audit import AuditRecord, Outcome
from tokenserver.store.device_codes import DeviceCodeStore
from tokenserver.store.refresh_tokens import RefreshTokenStore
from tokenserver.throttle import LoginThrottle, Standing, ThrottleUnavailable
from tokenserver.token_requests import (
    ExchangeLogin,
    PasswordLogin,
    RefreshLogin,
    TokenRequest,
    Via,
)

__all__ = ["MAX_SCOPES", "Grant", "GrantService"]

log = logging.getLogger(__name__)

MAX_SCOPES = 100
# Parsed scope parameters are remembered for requests this small (docker
# sends one or two), at most this many distinct ones.
_PARSED_ENTRIES = 4096
_PARSED_MAX_VALUES = 8
_PARSED_MAX_CHARS = 1024
# Exchanges name no account: their failures count against the address alone,
# and this stands for the account in the throttle's read (upper case: no
# folded name is ever spelt so).
EXCHANGE_ACCOUNT = "TOKEN-EXCHANGE"
_DATABASE_DOWN = "the database is unavailable; retry"
_DIRECTORY_DOWN = "the identity backend is unavailable; retry"


# What a device's poll that got no token is told (RFC 8628 §3.5), given the interval.
_POLL_REFUSALS: dict[str, Callable[[int], Refused]] = {
    "unknown": lambda _i: InvalidDeviceCode("the device code is invalid"),
    "spent": lambda _i: InvalidDeviceCode("the device code was used already"),
    "expired": lambda _i: DeviceCodeExpired("the device code expired; start again"),
    "slow_down": lambda i: SlowDown(f"polled too early; poll at most every {i} s"),
    "pending": lambda _i: AuthorizationPending("the request is waiting for its approval"),
    "denied": lambda _i: AccessDenied("the request was denied"),
}


@dataclass(frozen=True)
class Grant:
    token: IssuedToken
    refresh_token: str | None


@dataclass
class _Trail:
    """What is known so far of one request, for its audit row."""

    request: TokenRequest
    requested: tuple[Access, ...] = ()
    identity: Identity | None = None
    granted: tuple[Access, ...] | None = None
    subject: str = field(default="")


def _outcome(trail: _Trail) -> Outcome:
    wanted = {(a.type, a.name): a.actions for a in trail.requested}
    got = {(a.type, a.name): a.actions for a in trail.granted or ()}
    if wanted and not got:
        return "denied"
    if any(got.get(key) != actions for key, actions in wanted.items()):
        return "partial"
    return "granted"


def _detail(identity: Identity | None) -> str:
    """What vouched for a federated identity (or which personal token a person used), as a
    JSON object (never the token itself)."""
    if identity is None or not identity.attributes:
        return ""
    return json.dumps(dict(identity.attributes), sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True, kw_only=True)
class GrantService:
    """A token request from its parameters to its answer: who asks, what they get, the trail."""

    authenticator: Authenticator
    policy: Policy
    issuer: Issuer
    refresh_tokens: RefreshTokenStore
    # The `service` values tokens are issued for: the registries that trust us.
    services: frozenset[str]
    refresh_lifetime: dt.timedelta
    clock: Callable[[], dt.datetime]
    throttle: LoginThrottle
    metrics: TokenMetrics
    audit: AuditLog
    federation: FederatedBackend | None = None
    # RFC 8628's codes, which the web page's people approve (`device.DeviceLogins`).
    device_codes: DeviceCodeStore | None = None
    _parsed: Cache[tuple[str, ...], tuple[Access, ...]] = field(
        init=False, repr=False, default_factory=lambda: Cache(_PARSED_ENTRIES)
    )

    async def grant(self, request: TokenRequest, identity: Identity | None = None) -> Grant:
        """On the event loop; what blocks (bcrypt, the database, a directory) runs in threads.

        `identity` is for a caller proven another way (a web-page session);
        otherwise the request's credentials say who it is. Raises a `Refused`
        subclass; audits and counts the request either way.
        """
        context.CLIENT_IP.set(request.client_ip or "")
        context.VIA.set(request.via)
        trail = _Trail(request, identity=identity)
        try:
            grant = await self._grant(request, trail)
        except Refused as exc:
            self._finish(trail, exc.outcome)
            raise
        except BaseException:  # a bug, or cancelled: still one row
            self._finish(trail, "invalid_request")
            raise
        self._finish(trail, _outcome(trail))
        return grant

    def refuse_unparsed(
        self, via: Via, service: str, client_ip: str | None, user_agent: str, subject: str = ""
    ) -> None:
        """Audit and count a request the route could not even parse."""
        request = TokenRequest(service, (), via, client_ip=client_ip, user_agent=user_agent)
        self._finish(_Trail(request, subject=subject), "invalid_request")

    async def _grant(self, request: TokenRequest, trail: _Trail) -> Grant:
        device_code = request.device_code
        if device_code is not None:
            # The approved code says for whom, for which service and what was asked.
            request = trail.request = await run_sync(
                self._redeem_device, device_code, request, trail
            )
        if request.service not in self.services:
            raise UnknownService("unknown service")
        trail.requested = self._parse_requested(request.scopes)
        identity = trail.identity or await self._identify(request, trail)
        trail.identity = identity
        typed = (
            request.credentials.username if isinstance(request.credentials, PasswordLogin) else None
        )
        # Clients send the name as typed; the subject is the backend's own spelling of it.
        if request.account and request.account not in (identity.subject, typed):
            raise AccountMismatch("account does not match the authenticated user")
        if request.offline and identity.kind == "anonymous":
            raise CredentialsNeeded("offline tokens need credentials")
        trail.granted = self._filter(identity, request, trail.requested)
        token = self.issuer.issue(identity.subject, request.service, trail.granted, self.clock())
        # Said once, by the request's access line (a 200 from /token is a token issued).
        context.KIND.set(identity.kind)
        context.BACKEND.set(identity.backend)
        refresh_token = None
        if isinstance(request.credentials, RefreshLogin):
            refresh_token = request.credentials.token.reveal()  # the same one, no rotation
        # A CI token is the long-lived credential itself: refresh tokens are for
        # people. A personal token is too: a refresh token would outlive it and
        # its scopes.
        elif request.offline and identity.kind == "user" and identity.limit is None:
            refresh_token = await run_sync(self._issue_refresh_token, request, identity)
        return Grant(token, refresh_token)

    def _parse_requested(self, values: Sequence[str]) -> tuple[Access, ...]:
        key = tuple(values)
        if len(key) > _PARSED_MAX_VALUES or sum(map(len, key)) > _PARSED_MAX_CHARS:
            merged = self._parse(key)
        else:
            found = self._parsed.get(key)
            merged = self._parsed.put(key, self._parse(key)) if found is None else found
        context.REQUESTED.set(merged)
        return merged

    @staticmethod
    def _parse(values: Sequence[str]) -> tuple[Access, ...]:
        try:
            requested = parse_scopes(values)
        except ScopeError as exc:
            raise MalformedScope(f"malformed scope: {exc}") from None
        if len(requested) > MAX_SCOPES:
            raise MalformedScope(f"more than {MAX_SCOPES} scopes requested")
        return tuple(merge(requested))

    async def _identify(self, request: TokenRequest, trail: _Trail) -> Identity:
        credentials = request.credentials
        if credentials is None:
            return Identity.anonymous()
        if isinstance(credentials, RefreshLogin):
            return await run_sync(self._identify_refresh, credentials.token, request.service)
        if isinstance(credentials, ExchangeLogin):
            return await run_sync(self._identify_exchange, credentials.subject_token, request)
        if not isinstance(credentials, PasswordLogin):
            # A device's code is redeemed first (`_redeem_device`), which says who it is.
            raise InvalidDeviceCode("the device code is invalid")
        trail.subject = credentials.username
        return await self.authenticate(
            credentials.username, credentials.password, request.client_ip
        )

    async def authenticate(
        self, username: str, password: Secret, ip: str | None = None
    ) -> Identity:
        """A password login, throttled: also how the admin API checks Basic credentials.

        Throttled accounts and addresses are refused before the password is
        looked at. Every spelling of a name counts against one account, whatever
        the backend makes of the variant. The warm path — the throttle's
        recent read says the account and address are clean, and memory alone
        proves the password — stays on the event loop; anything else runs the
        whole login in a worker thread.
        """
        account = name_key(username)
        standing = self.throttle.peek(account, ip)
        if standing is not None:
            if standing.retry_after:
                raise Throttled(standing.retry_after)
            if standing.account_failures == 0:  # a success would have nothing to clear
                identity = self.authenticator.remembered(username, password)
                if identity is not None:
                    self.metrics.login(identity.backend, "success")
                    return identity
        return await run_sync(self._authenticate, username, password, ip)

    def _authenticate(self, username: str, password: Secret, ip: str | None) -> Identity:
        """Blocking: the throttle read, the backends, bcrypt, counting a failure."""
        account = name_key(username)
        standing = self._standing(account, ip)
        try:
            identity = self.authenticator.authenticate(username, password)
        except BadCredentials as exc:
            self.metrics.login(exc.backend or "none", "failure")
            # No one guesses a signature: a bad ID token counts against its
            # address only, so it cannot lock a trust's pipelines out.
            self._count_failure(None if exc.backend == FEDERATION else account, ip)
            raise BadLogin("invalid username or password") from None
        except BackendUnavailable as exc:
            raise self._directory_down(exc) from None
        self.throttle.success(account, standing)
        self.metrics.login(identity.backend, "success")
        return identity

    def _identify_refresh(self, value: Secret, service: str) -> Identity:
        try:
            info = self.refresh_tokens.use(value.reveal(), self.clock())
        except SQLAlchemyError:
            raise BackendDown(_DATABASE_DOWN) from None
        if info is None:
            raise InvalidRefreshToken("the refresh token is invalid, expired or revoked")
        if info.service != service:
            raise InvalidRefreshToken("the refresh token was issued for another service")
        return self._bound_account(
            info.subject, info.backend, info.account_key, InvalidRefreshToken, "refresh token"
        )

    def _bound_account(
        self,
        subject: str,
        backend: str | None,
        account_key: str,
        refusal: type[Refused],
        what: str,
    ) -> Identity:
        """Blocking: the live account a credential (`what`) was bound to, else `refusal`.

        A None `backend`: bound before accounts were recorded, by name only.
        """
        try:
            found = self.authenticator.find(subject)
        except BackendUnavailable:
            raise BackendDown(_DIRECTORY_DOWN) from None
        if found is None:
            raise refusal(f"the {what}'s account no longer exists or is disabled")
        found_backend, account = found
        # The same name is not the same account: a user deleted and created
        # again (or given a new password while this login was being issued),
        # or a name another backend now answers for, is a stranger to it.
        if backend is not None and (found_backend, account.account_key) != (backend, account_key):
            raise refusal(f"the {what} was issued to another account")
        return account.identity(found_backend)

    def _redeem_device(
        self, device_code: Secret, request: TokenRequest, trail: _Trail
    ) -> TokenRequest:
        """Blocking: a device's poll (RFC 8628 §3.4-3.5); once approved, the request
        as its code asked it (service, scopes unless the poll names some), for the
        account that approved it, with a refresh token."""
        if request.service and request.service not in self.services:
            raise UnknownService("unknown service")
        if self.device_codes is None:
            raise InvalidDeviceCode("the device code is invalid")
        try:
            poll = self.device_codes.poll(
                device_code.reveal(),
                request.client_id,
                request.service,
                self.clock(),
            )
        except SQLAlchemyError:
            raise BackendDown(_DATABASE_DOWN) from None
        redeemed = poll.redeemed
        if redeemed is None:
            raise _POLL_REFUSALS[poll.state](poll.interval)
        trail.identity = self._bound_account(
            redeemed.subject,
            redeemed.backend,
            redeemed.account_key,
            InvalidDeviceCode,
            "device code",
        )
        return replace(
            request,
            service=redeemed.service,
            scopes=request.scopes or redeemed.scopes.split(),
            offline=True,
        )

    def _identify_exchange(self, token: Secret, request: TokenRequest) -> Identity:
        """Blocking: the throttle read, the trusts of the token's issuer, counting a failure."""
        ip = request.client_ip
        self._standing(EXCHANGE_ACCOUNT, ip)
        try:
            account = None if self.federation is None else self.federation.exchange(token)
        except BackendUnavailable as exc:
            raise self._directory_down(exc) from None
        if account is None:
            self.metrics.login(FEDERATION, "failure")
            self._count_failure(None, ip)
            raise InvalidSubjectToken("the subject token is not accepted by any trust")
        self.metrics.login(FEDERATION, "success")
        return account.identity(FEDERATION)

    def _standing(self, account: str, ip: str | None) -> Standing:
        """Blocking: the throttle's read, refusing a throttled account or address."""
        try:
            standing = self.throttle.check(account, ip)
        except ThrottleUnavailable:
            raise BackendDown(_DATABASE_DOWN) from None
        if standing.retry_after:
            raise Throttled(standing.retry_after)
        return standing

    def _count_failure(self, account: str | None, ip: str | None) -> None:
        try:
            self.throttle.failure(account, ip)
        except ThrottleUnavailable:
            # An uncounted failure would be a free guess.
            raise BackendDown(_DATABASE_DOWN) from None

    def _directory_down(self, exc: BackendUnavailable) -> BackendDown:
        self.metrics.login("unavailable", "failure")
        log.warning("identity backend unavailable", extra={"reason": str(exc)})
        return BackendDown(_DIRECTORY_DOWN)

    def _filter(
        self, identity: Identity, request: TokenRequest, requested: Sequence[Access]
    ) -> tuple[Access, ...]:
        context.ACCOUNT.set(identity.subject)
        if identity.limit is not None:
            requested = identity.limit.narrow(requested)
        granted = tuple(
            self.policy.filter(Requester(identity, request.service, request.client_ip), requested)
        )
        if identity.kind in ("ci", "federated"):
            # Whatever the rules say: a pipeline never administers the server.
            granted = tuple(a for a in granted if a.type != ADMIN_RESOURCE_TYPE)
        context.GRANTED.set(granted)
        return granted

    def _issue_refresh_token(self, request: TokenRequest, identity: Identity) -> str:
        """Blocking: one database write."""
        try:
            return self.refresh_tokens.issue(
                identity.subject,
                request.service,
                request.client_id,
                self.refresh_lifetime,
                self.clock(),
                backend=identity.backend,
                account_key=identity.account_key,
            )
        except SQLAlchemyError:
            raise BackendDown(_DATABASE_DOWN) from None

    def _finish(self, trail: _Trail, outcome: Outcome) -> None:
        request, identity = trail.request, trail.identity
        self.metrics.token_request(outcome)
        self.audit.record(
            AuditRecord(
                at=self.clock(),
                subject=identity.subject if identity else trail.subject,
                kind=identity.kind if identity else "",
                backend=identity.backend if identity else "",
                via=request.via,
                client_ip=request.client_ip or "",
                user_agent=request.user_agent,
                service=request.service,
                requested=format_scopes(trail.requested),
                granted=format_scopes(trail.granted or ()),
                outcome=outcome,
                detail=_detail(identity),
            )
        )

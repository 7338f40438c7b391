"""docker login through the browser: the device authorization grant (RFC 8628).

A device (a command line, a credential helper) asks for codes
(`DeviceLogins.start`); the person it acts for opens the page, signs in,
types or follows the user code, sees which client asks, from which address
and when, and approves or denies (`decide`, audited as `device.approve` or
`device.deny` with the client id as target: never a code). The device polls
POST /token meanwhile; that side is `GrantService` over the same store.

A user code is short enough to be typed, so guessing one is throttled: a
wrong code counts as a failed login of the session that typed it and of its
address (`throttle.LoginThrottle`, shared by every instance), and past the
limits no code is looked at. Methods block (the database): call them from a
worker thread in async code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from authcore.identity import Identity
from authcore.scope import ScopeError, format_scopes, merge, parse_scopes
from tokenserver.audit import Actor, AdminTrail
from tokenserver.audited import AuditedError
from tokenserver.store.audit import Outcome
from tokenserver.store.device_codes import (
    ALPHABET,
    USER_CODE_LENGTH,
    DeviceCodeStore,
    DeviceRequest,
    IssuedCodes,
)
from tokenserver.store.device_codes import TooManyCodes as NoRoom
from tokenserver.throttle import LoginThrottle, ThrottleUnavailable

__all__ = [
    "MAX_TYPED",
    "AlreadyDecided",
    "DeviceError",
    "DeviceLogins",
    "DeviceRequest",
    "DeviceThrottled",
    "DeviceUnavailable",
    "InvalidDeviceRequest",
    "IssuedCodes",
    "TooManyCodes",
    "TooManyGuesses",
    "UnknownUserCode",
    "normalise_user_code",
]

MAX_CLIENT_ID = 255
MAX_SCOPES = 100
MAX_TYPED = 64
# Far more than one person's devices wait for at once; an address (an IPv6 /64) asking
# for more is asking for codes to guess at, or to fill the table with.
MAX_WAITING_PER_NETWORK = 20
# Upper case: no folded account name is spelt so, so no one's login failures are these.
_GUESSER = "USER-CODE-SESSION:"


class DeviceError(AuditedError):
    """A device request or decision refused; the message says why (never a code)."""


class InvalidDeviceRequest(DeviceError): ...


class UnknownUserCode(DeviceError, outcome="not_found"):
    """No live request has this code (or it was never one): a guess, as far as we know."""


class AlreadyDecided(DeviceError, outcome="conflict"): ...


class DeviceUnavailable(DeviceError, outcome="backend_unavailable"): ...


class DeviceThrottled(DeviceError, outcome="throttled"):
    """Refused for now: `retry_after` seconds."""

    reason = ""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"{self.reason}; retry in {retry_after} s")
        self.retry_after = retry_after


class TooManyGuesses(DeviceThrottled):
    reason = "too many wrong codes"


class TooManyCodes(DeviceThrottled):
    reason = "too many codes of this client's network are waiting"


def normalise_user_code(typed: str) -> str | None:
    """The code as stored: dashes and spaces dropped, upper case; None if it cannot be one.

    ASCII is checked first: `str.upper` makes ASCII of some other letters (the dotless i is "I").
    """
    if len(typed) > MAX_TYPED or not typed.isascii():
        return None
    code = typed.replace("-", "").replace(" ", "").upper()
    if len(code) != USER_CODE_LENGTH or any(c not in ALPHABET for c in code):
        return None
    return code


def _client_id(value: str) -> str:
    # RFC 6749 Appendix A.1: printable ASCII.
    if not value or len(value) > MAX_CLIENT_ID or not all(" " <= c <= "~" for c in value):
        raise InvalidDeviceRequest(
            f"client_id must be 1 to {MAX_CLIENT_ID} printable ASCII characters"
        )
    return value


def _scopes(values: Sequence[str]) -> str:
    try:
        requested = merge(parse_scopes(values))
    except ScopeError as exc:
        raise InvalidDeviceRequest(f"malformed scope: {exc}") from None
    if len(requested) > MAX_SCOPES:
        raise InvalidDeviceRequest(f"more than {MAX_SCOPES} scopes requested")
    return format_scopes(requested)


@dataclass(frozen=True, kw_only=True)
class DeviceLogins:
    """A device's request for codes, and the signed-in person's look at it and decision."""

    codes: DeviceCodeStore
    throttle: LoginThrottle
    trail: AdminTrail
    clock: Callable[[], dt.datetime]
    # The `service` values codes are issued for; the first when a device names none.
    services: Sequence[str]
    code_ttl: int
    interval: int
    # Codes one client network may have waiting at once: a flood fills no table.
    max_waiting: int = MAX_WAITING_PER_NETWORK

    def start(
        self,
        client_id: str,
        scopes: Sequence[str],
        service: str | None,
        client_ip: str,
        user_agent: str,
    ) -> IssuedCodes:
        """RFC 8628 §3.1-3.2: new codes for a device."""
        if service is None:
            service = self.services[0]
        elif service not in self.services:
            raise InvalidDeviceRequest("unknown service")
        try:
            return self.codes.create(
                client_id=_client_id(client_id),
                service=service,
                scopes=_scopes(scopes),
                client_ip=client_ip,
                client_net=self.throttle.network_of(client_ip),
                user_agent=user_agent,
                now=self.clock(),
                lifetime=dt.timedelta(seconds=self.code_ttl),
                interval=self.interval,
                max_live=self.max_waiting,
            )
        except NoRoom as exc:
            raise TooManyCodes(exc.retry_after) from None
        except SQLAlchemyError:
            raise DeviceUnavailable("the database is unavailable; retry") from None

    def lookup(self, session_id: int, ip: str | None, typed: str) -> DeviceRequest:
        """The live pending request of a typed code, for the person to decide; each
        miss counts against their session and address."""
        try:
            _code, found = self._guess(session_id, ip, typed)
        except SQLAlchemyError:
            raise DeviceUnavailable("the database is unavailable; retry") from None
        if found.status != "pending":
            raise AlreadyDecided("this code was decided already")
        return found

    def decide(
        self, actor: Actor, identity: Identity, session_id: int, typed: str, *, approve: bool
    ) -> DeviceRequest:
        """Approve (binding the request to `identity`'s account) or deny; audited."""
        action = "device.approve" if approve else "device.deny"
        outcome: Outcome = "ok"
        target = ""
        try:
            code, found = self._guess(session_id, actor.client_ip or None, typed)
            target = found.client_id
            decided = self.codes.decide(
                code,
                self.clock(),
                approve=approve,
                subject=identity.subject,
                backend=identity.backend,
                account_key=identity.account_key,
            )
            if not decided:
                raise AlreadyDecided("this code was decided already")
            return found
        except DeviceError as exc:
            outcome = exc.outcome
            raise
        except SQLAlchemyError:
            outcome = "backend_unavailable"
            raise DeviceUnavailable("the database is unavailable; retry") from None
        finally:
            self.trail.record(actor, action, target[:255], outcome)

    def _guess(self, session_id: int, ip: str | None, typed: str) -> tuple[str, DeviceRequest]:
        """A typed code and its live request, once the throttle lets this session and
        address guess."""
        guesser = f"{_GUESSER}{session_id}"
        try:
            # A guesser already refused is refused again from memory for a second.
            standing = self.throttle.peek(guesser, ip) or self.throttle.check(guesser, ip)
        except ThrottleUnavailable:
            raise DeviceUnavailable("the database is unavailable; retry") from None
        if standing.retry_after:
            raise TooManyGuesses(standing.retry_after)
        code = normalise_user_code(typed)
        found = None if code is None else self.codes.find(code, self.clock())
        if code is None or found is None:
            try:
                self.throttle.failure(guesser, ip)
            except ThrottleUnavailable:
                raise DeviceUnavailable("the database is unavailable; retry") from None
            raise UnknownUserCode("no request has this code, or it expired")
        return code, found

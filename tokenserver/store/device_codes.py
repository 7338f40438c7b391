"""Device codes (RFC 8628), in the database: any instance answers the poll, and a
code outlives a crash of the instance that issued it.

Both codes are kept only as SHA-256 hashes. Each change of a code's state is
one conditional UPDATE on what was read (a compare-and-set), so instances
racing at one code — two approvals, two polls of an approved code — change it
once: an approved code is spent by exactly one poll.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tokenserver.store.models import DeviceCode
from tokenserver.store.secret_hash import hash_secret
from tokenserver.store.table import TableStore, record

__all__ = [
    "ALPHABET",
    "USER_CODE_LENGTH",
    "DeviceCodeStore",
    "DeviceRequest",
    "IssuedCodes",
    "Poll",
    "Redeemed",
    "TooManyCodes",
]

# No vowels (no words spelt by chance) and none of the letters read as a digit.
ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
# What RFC 8628 §3.5 adds to the interval at each poll that came too early.
SLOW_DOWN_SECONDS = 5
# A poll this much early is on time: requests do not arrive evenly spaced.
_POLL_LEEWAY = dt.timedelta(milliseconds=500)
# Expired codes are kept this long (a late poll is told `expired_token`), then purged.
_KEPT_EXPIRED = dt.timedelta(hours=1)
_CREATE_TRIES = 5
# Compare-and-set retries of a poll that raced with another change of its code.
_POLL_TRIES = 3


@dataclass(frozen=True)
class DeviceRequest:
    """What the person asked to decide sees of a request (never a code)."""

    id: int
    client_id: str
    service: str
    scopes: str
    client_ip: str
    user_agent: str
    created_at: dt.datetime
    expires_at: dt.datetime
    status: str


@dataclass(frozen=True)
class IssuedCodes:
    device_code: str
    # As shown: XXXX-XXXX.
    user_code: str
    expires_at: dt.datetime
    interval: int


@dataclass(frozen=True)
class Redeemed:
    """An approved code, now spent: the account it is bound to and what it asked for."""

    service: str
    scopes: str
    subject: str
    backend: str
    account_key: str


@dataclass(frozen=True)
class Poll:
    """What a poll found: `redeemed` when it spent an approved code."""

    state: Literal["unknown", "spent", "expired", "slow_down", "pending", "denied", "approved"]
    interval: int = 0
    redeemed: Redeemed | None = None


def _new_user_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(USER_CODE_LENGTH))


def shown(user_code: str) -> str:
    half = USER_CODE_LENGTH // 2
    return f"{user_code[:half]}-{user_code[half:]}"


class TooManyCodes(Exception):
    """One client's network holds as many waiting codes as it may; the first of them
    expires in `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


def _check_room(s: Session, client_net: str, now: dt.datetime, max_live: int) -> None:
    count, first_expiry = s.execute(
        select(func.count(), func.min(DeviceCode.expires_at)).where(
            DeviceCode.client_net == client_net,
            DeviceCode.status == "pending",
            DeviceCode.expires_at > now,
        )
    ).one()
    if count >= max_live:
        raise TooManyCodes(max(1, int((first_expiry - now).total_seconds()) + 1))


class DeviceCodeStore(TableStore):
    def create(
        self,
        *,
        client_id: str,
        service: str,
        scopes: str,
        client_ip: str,
        client_net: str,
        user_agent: str,
        now: dt.datetime,
        lifetime: dt.timedelta,
        interval: int,
        max_live: int,
    ) -> IssuedCodes:
        """New codes; `user_code` is drawn again in the rare case it is taken.

        `TooManyCodes` when `client_net` holds `max_live` codes still waiting. Counted,
        then added: instances racing may each add one past it, never more.
        """
        device_code = secrets.token_urlsafe(32)
        for attempt in range(_CREATE_TRIES):
            user_code = _new_user_code()
            try:
                with self._db.session() as s:
                    if attempt == 0:
                        s.execute(
                            delete(DeviceCode).where(DeviceCode.expires_at <= now - _KEPT_EXPIRED)
                        )
                        _check_room(s, client_net, now, max_live)
                    s.add(
                        DeviceCode(
                            device_hash=hash_secret(device_code),
                            user_hash=hash_secret(user_code),
                            client_id=client_id,
                            service=service,
                            scopes=scopes,
                            client_ip=client_ip[:64],
                            client_net=client_net[:64],
                            user_agent=user_agent[:512],
                            created_at=now,
                            expires_at=now + lifetime,
                            interval=interval,
                            next_poll_at=now,
                            status="pending",
                        )
                    )
            except IntegrityError:
                continue
            return IssuedCodes(device_code, shown(user_code), now + lifetime, interval)
        raise RuntimeError("no free user code found")  # 20^8 codes: never in practice

    def find(self, user_code: str, now: dt.datetime) -> DeviceRequest | None:
        """The live request this (normalised) user code names, whatever its state."""
        with self._db.session() as s:
            row = s.scalar(
                select(DeviceCode).where(
                    DeviceCode.user_hash == hash_secret(user_code), DeviceCode.expires_at > now
                )
            )
            return None if row is None else record(DeviceRequest, row)

    def decide(
        self,
        user_code: str,
        now: dt.datetime,
        *,
        approve: bool,
        subject: str,
        backend: str,
        account_key: str,
    ) -> bool:
        """Approve (bound to the account) or deny a live pending request; whether this did."""
        return bool(
            self._db.change(
                update(DeviceCode)
                .where(
                    DeviceCode.user_hash == hash_secret(user_code),
                    DeviceCode.status == "pending",
                    DeviceCode.expires_at > now,
                )
                .values(
                    status="approved" if approve else "denied",
                    subject=subject,
                    backend=backend,
                    account_key=account_key or None,
                    decided_at=now,
                )
            )
        )

    def poll(self, device_code: str, client_id: str, service: str, now: dt.datetime) -> Poll:
        """A device's poll: too early, still pending, decided, or the approved code spent now.

        `service` (empty: any) must be the one the code was asked for, as
        `client_id` must.
        """
        for _ in range(_POLL_TRIES):
            with self._db.session() as s:
                row = s.scalar(
                    select(DeviceCode).where(DeviceCode.device_hash == hash_secret(device_code))
                )
            if row is None or row.client_id != client_id or service not in ("", row.service):
                return Poll("unknown")
            if row.status == "spent":
                return Poll("spent")
            if row.expires_at <= now:
                return Poll("expired")
            if now + _POLL_LEEWAY < row.next_poll_at:
                return self._slow_down(row, now)
            after = "spent" if row.status == "approved" else row.status
            changed = self._db.change(
                update(DeviceCode)
                .where(
                    DeviceCode.id == row.id,
                    DeviceCode.status == row.status,
                    DeviceCode.next_poll_at == row.next_poll_at,
                )
                .values(status=after, next_poll_at=now + dt.timedelta(seconds=row.interval))
            )
            if not changed:
                continue  # another poll or the decision came between: read again
            if row.status == "approved":
                redeemed = Redeemed(
                    row.service,
                    row.scopes,
                    row.subject or "",
                    row.backend or "",
                    row.account_key or "",
                )
                return Poll("approved", row.interval, redeemed)
            return Poll("denied" if row.status == "denied" else "pending", row.interval)
        # Lost every race to another poll: polls this close together are too early.
        assert row is not None
        return self._slow_down(row, now)

    def _slow_down(self, row: DeviceCode, now: dt.datetime) -> Poll:
        """RFC 8628 §3.5: this and every later poll waits 5 s longer."""
        interval = row.interval + SLOW_DOWN_SECONDS
        self._db.change(
            update(DeviceCode)
            .where(DeviceCode.id == row.id)
            .values(
                interval=DeviceCode.interval + SLOW_DOWN_SECONDS,
                next_poll_at=now + dt.timedelta(seconds=interval),
            )
        )
        return Poll("slow_down", interval)

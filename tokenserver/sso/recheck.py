"""Asking the OpenID provider about its people again, without them: how a person removed
at the provider loses what they hold here.

A person's personal tokens, refresh tokens and web sessions rest on the
provider's word, which holds for `sso.recheck` seconds after it was given
(`authn/database.py` refuses them after that). A sign-in renews it; so does
this recheck, which every `recheck`/4 seconds (at most a minute) refreshes
the grant of each person last vouched for more than `recheck`/2 ago with the
refresh token the provider gave at their sign-in (`SSO.ask_again`). If it
still vouches for them, their groups are read afresh from the ID token it
answers; if it refuses the grant, everything they hold here ends at once
(`Accounts.sso_gone`). A person of whom the provider gave no refresh token
cannot be asked: their word lapses `recheck` after their last sign-in.

Several instances run this side by side: a lease on each person
(`UserStore.claim_sso`) makes one of them ask, once. A pass asks at most
`MAX_PER_PASS` people, one after another, and stops early when the provider
cannot be reached; `tokenserver sso recheck` runs a pass at once, over everyone.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from tokenserver.accounts import AccountError, Accounts
from tokenserver.audit import Actor
from tokenserver.sso.provider import DEADLINE, ProviderUnavailable
from tokenserver.sso.signin import SSO, PersonGone

__all__ = ["MAX_PER_PASS", "RECHECK_ACTOR", "RecheckReport", "Rechecker", "keep_rechecking"]

log = logging.getLogger(__name__)

MAX_PER_PASS = 100
# A pass gives up on the provider after this many answers it could not use in a row.
MAX_UNAVAILABLE = 3
# Longer than one exchange with the provider may last, and its ID token check.
LEASE = dt.timedelta(seconds=3 * DEADLINE)
# Who the background pass is in the audit trail.
RECHECK_ACTOR = Actor("sso-recheck", "sso", "local")


@dataclass(frozen=True)
class RecheckReport:
    rechecked: int = 0
    ended: int = 0
    unavailable: int = 0


@dataclass(frozen=True)
class Rechecker:
    sso: SSO
    accounts: Accounts
    clock: Callable[[], dt.datetime]

    async def run(self, actor: Actor, *, everyone: bool = False) -> RecheckReport:
        """One pass over the people who are due (`everyone`: all who can be asked)."""
        users = self.accounts.users
        now = self.clock()
        age = dt.timedelta(seconds=0 if everyone else self.sso.config.recheck / 2)
        before = now - age
        names = await asyncio.to_thread(users.sso_due, before, now, MAX_PER_PASS)
        rechecked = ended = unavailable = failed_in_a_row = 0
        for name in names:
            if failed_in_a_row >= MAX_UNAVAILABLE:
                break
            now = self.clock()
            claim = await asyncio.to_thread(users.claim_sso, name, before, now, now + LEASE)
            if claim is None:  # another instance is at it, or it was done meanwhile
                continue
            try:
                answer = await self.sso.ask_again(claim)
            except PersonGone as exc:
                log.warning(
                    "the provider no longer vouches for a person: their access ends",
                    extra={"user": name, "reason": str(exc)},
                )
                if await self._act(self.accounts.sso_gone, actor, name):
                    ended += 1
                failed_in_a_row = 0
                continue
            except ProviderUnavailable as exc:
                log.warning(
                    "the provider cannot be asked about a person",
                    extra={"user": name, "reason": str(exc)},
                )
                await asyncio.to_thread(users.release_sso, name)
                unavailable += 1
                failed_in_a_row += 1
                continue
            failed_in_a_row = 0
            if await self._act(
                self.accounts.sso_rechecked, actor, name, answer.groups, answer.refresh
            ):
                rechecked += 1
        return RecheckReport(rechecked, ended, unavailable)

    async def _act(
        self, act: Callable[..., object], actor: Actor, name: str, *more: object
    ) -> bool:
        try:
            await asyncio.to_thread(act, actor, name, *more)
        except AccountError as exc:  # deleted meanwhile, or the database is down
            log.warning(
                "a recheck's result is not stored", extra={"user": name, "reason": str(exc)}
            )
            await asyncio.to_thread(self.accounts.users.release_sso, name)
            return False
        return True


async def keep_rechecking(rechecker: Rechecker) -> None:
    """Run a pass every `recheck`/4 seconds (at most a minute), until cancelled."""
    period = min(60.0, rechecker.sso.config.recheck / 4)
    while True:
        await asyncio.sleep(period)
        try:
            await rechecker.run(RECHECK_ACTOR)
        except Exception:
            # The next pass tries again; a lease the failed one held lapses by itself.
            log.exception("a recheck pass failed")

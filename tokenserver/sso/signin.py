"""A sign-in through the OpenID provider: the authorization code flow with PKCE (S256),
`state` and `nonce`, from the redirect to the provider to the person it vouched for.

`begin` keeps what the answer will be checked against (the nonce, the code
verifier, where to go afterwards) in the database under the state's hash, so
the provider's answer may come back to any instance; `finish` takes it (once:
a replayed state finds nothing), redeems the code at the provider's token
endpoint with the verifier and checks the ID token (`id_tokens.py`). What the
person may do here is the accounts service's (`Accounts.sso_sign_in`).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from authcore.remote_keys import KeysUnavailable
from tokenserver.accounts import MAX_GROUPS
from tokenserver.audit import Outcome
from tokenserver.authz.patterns import Pattern
from tokenserver.authz.policy import ADMIN_GROUP
from tokenserver.config import SSOConfig
from tokenserver.federation.verify import IssuerKeys
from tokenserver.sso.id_tokens import (
    MAX_SIGN_IN_AGE,
    IDTokenRules,
    InvalidIDToken,
    SignedInPerson,
    check_id_token,
)
from tokenserver.sso.provider import ProviderClient, ProviderRefused, ProviderUnavailable
from tokenserver.store.sso_logins import PendingLogin, SSOLoginStore, TooManyPending

__all__ = ["SSO", "SignInFailed", "Started"]


class SignInFailed(Exception):
    """The provider's answer signs no one in; the message says why (never a secret)."""

    def __init__(self, reason: str, outcome: Outcome, status: int) -> None:
        super().__init__(reason)
        self.outcome: Outcome = outcome
        self.status = status


@dataclass(frozen=True)
class Started:
    """Where to send the browser, and the state its cookie must carry back."""

    state: str
    url: str


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class SSO:
    def __init__(
        self,
        config: SSOConfig,
        logins: SSOLoginStore,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.config = config
        self._logins = logins
        self._clock = clock
        self._provider = ProviderClient(
            config.issuer, config.ca_file, config.client_id, config.client_secret_value()
        )
        self._keys = IssuerKeys(
            config.issuer, ca_file=config.ca_file, clock=lambda: clock().timestamp()
        )
        self._rules = IDTokenRules(
            issuer=config.issuer,
            client_id=config.client_id,
            username_claim=config.username_claim,
            groups_claim=config.groups_claim,
            claims={name: Pattern(source) for name, source in config.claims.items()},
        )

    async def begin(self, redirect_uri: str, return_to: str) -> Started:
        try:
            endpoints = await self._provider.endpoints()
        except ProviderUnavailable as exc:
            raise SignInFailed(str(exc), "backend_unavailable", 503) from None
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)
        login = PendingLogin(nonce, verifier, return_to)
        lifetime = dt.timedelta(seconds=MAX_SIGN_IN_AGE)
        try:
            await asyncio.to_thread(self._logins.add, state, login, self._clock(), lifetime)
        except TooManyPending as exc:
            raise SignInFailed(str(exc), "throttled", 503) from None
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.config.client_id,
                "redirect_uri": redirect_uri,
                "scope": " ".join(self.config.scopes),
                "state": state,
                "nonce": nonce,
                "code_challenge": _challenge(verifier),
                "code_challenge_method": "S256",
            }
        )
        separator = "&" if "?" in endpoints.authorization else "?"
        return Started(state, f"{endpoints.authorization}{separator}{query}")

    async def finish(self, state: str, code: str, redirect_uri: str) -> tuple[SignedInPerson, str]:
        """The person the provider vouched for, and where they were going."""
        login = await asyncio.to_thread(self._logins.take, state, self._clock())
        if login is None:
            raise SignInFailed("no sign-in of this state is under way", "invalid_request", 400)
        try:
            id_token = await self._provider.redeem(code, redirect_uri, login.code_verifier)
            person = await asyncio.to_thread(
                check_id_token,
                id_token,
                login.nonce,
                self._keys,
                self._rules,
                lambda: self._clock().timestamp(),
            )
        except (ProviderRefused, InvalidIDToken) as exc:
            raise SignInFailed(str(exc), "bad_credentials", 401) from None
        except (ProviderUnavailable, KeysUnavailable) as exc:
            raise SignInFailed(str(exc), "backend_unavailable", 503) from None
        return person, login.return_to

    def groups(self, person: SignedInPerson) -> tuple[str, ...]:
        """The person's groups here: the provider's (the first `MAX_GROUPS` by name), and
        `admin` for a member of any of `admin_groups` (a provider group of that name alone
        makes no one an admin)."""
        given = set(person.groups)
        admin = bool(given & set(self.config.admin_groups))
        given.discard(ADMIN_GROUP)
        kept = sorted(given)[: MAX_GROUPS - 1]
        return tuple(sorted([*kept, ADMIN_GROUP])) if admin else tuple(kept)

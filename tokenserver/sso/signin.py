"""A sign-in through the OpenID provider: the authorization code flow with PKCE (S256),
`state` and `nonce`, from the redirect to the provider to the person it vouched for; `ask_again`, later, what it says of them now (see
`sso/recheck.py`).

`begin` keeps what the answer will be checked against (the nonce, the code
verifier, where to go afterwards) in the database under the state's hash, so
the provider's answer may come back to any instance; `finish` takes it (once:
a replayed state finds nothing), redeems the code at the provider's token
endpoint with the verifier and checks the ID token (`id_tokens.py`), and seals
the refresh token the provider gave, if any (`sealed.py`). What the person may
do here is the accounts service's (`Accounts.sso_sign_in`).
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
from tokenserver.sso.provider import (
    ProviderClient,
    ProviderRefused,
    ProviderTokens,
    ProviderUnavailable,
)
from tokenserver.sso.sealed import Sealer
from tokenserver.store.sso_logins import PendingLogin, SSOLoginStore, TooManyPending
from tokenserver.store.users import SSOClaim, SSOPerson

__all__ = ["SSO", "FinishedSignIn", "PersonGone", "Rechecked", "SignInFailed", "Started"]


class SignInFailed(Exception):
    """The provider's answer signs no one in; the message says why (never a secret)."""

    def __init__(self, reason: str, outcome: Outcome, status: int) -> None:
        super().__init__(reason)
        self.outcome: Outcome = outcome
        self.status = status


class PersonGone(Exception):
    """The provider no longer vouches for the person (the message says how it said so)."""


@dataclass(frozen=True)
class FinishedSignIn:
    person: SignedInPerson
    # Where the person was going when the sign-in began.
    return_to: str
    # The provider's refresh token, sealed; None if it gave none.
    refresh: str | None


@dataclass(frozen=True)
class Rechecked:
    """What the provider says of a person now: their groups here (None when it answered
    no ID token, so none are known anew), and their new refresh token, sealed, if it
    rotated the old one."""

    groups: tuple[str, ...] | None
    refresh: str | None


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
        secret = config.client_secret_value()
        self._provider = ProviderClient(config.issuer, config.ca_file, config.client_id, secret)
        self._sealer = Sealer(secret)
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

    async def finish(self, state: str, code: str, redirect_uri: str) -> FinishedSignIn:
        """The person the provider vouched for, where they were going, and their refresh
        token at the provider, sealed."""
        login = await asyncio.to_thread(self._logins.take, state, self._clock())
        if login is None:
            raise SignInFailed("no sign-in of this state is under way", "invalid_request", 400)
        try:
            tokens = await self._provider.redeem(code, redirect_uri, login.code_verifier)
            assert tokens.id_token is not None  # redeem insists on one
            person = await self._check(tokens.id_token, login.nonce)
        except (ProviderRefused, InvalidIDToken) as exc:
            raise SignInFailed(str(exc), "bad_credentials", 401) from None
        except (ProviderUnavailable, KeysUnavailable) as exc:
            raise SignInFailed(str(exc), "backend_unavailable", 503) from None
        refresh = self._seal(tokens, person.subject)
        return FinishedSignIn(person, login.return_to, refresh)

    async def ask_again(self, claim: SSOClaim) -> Rechecked:
        """Refresh the person's grant at the provider: what it says of them now.

        PersonGone when it refuses the refresh token as a grant it no longer
        honours (`invalid_grant`: revoked, expired, or of a person it no longer
        has) or answers an ID token that is not theirs or fails the `claims`
        conditions. ProviderUnavailable for anything else (it cannot be reached;
        it refuses this client, which is the configuration's fault, not theirs),
        and when the sealed token cannot be opened (see `sealed.py`).
        """
        token = self._sealer.open(claim.refresh, self._person(claim.subject).key())
        if token is None:
            raise ProviderUnavailable("the stored refresh token cannot be opened")
        try:
            tokens = await self._provider.refresh(token)
        except ProviderRefused as exc:
            if exc.error == "invalid_grant":
                raise PersonGone(str(exc)) from None
            raise ProviderUnavailable(str(exc)) from None
        groups = None
        if tokens.id_token is not None:
            try:
                person = await self._check(tokens.id_token, None)
            except KeysUnavailable as exc:
                raise ProviderUnavailable(str(exc)) from None
            except InvalidIDToken as exc:
                raise PersonGone(f"the refreshed ID token: {exc}") from None
            if person.subject != claim.subject:
                raise PersonGone("the refreshed ID token names another subject")
            groups = self.groups(person)
        return Rechecked(groups, self._seal(tokens, claim.subject))

    def _person(self, subject: str) -> SSOPerson:
        return SSOPerson(self.config.issuer, subject)

    def _seal(self, tokens: ProviderTokens, subject: str) -> str | None:
        if tokens.refresh_token is None:
            return None
        return self._sealer.seal(tokens.refresh_token, self._person(subject).key())

    async def _check(self, id_token: str, nonce: str | None) -> SignedInPerson:
        return await asyncio.to_thread(
            check_id_token,
            id_token,
            nonce,
            self._keys,
            self._rules,
            lambda: self._clock().timestamp(),
        )

    def groups(self, person: SignedInPerson) -> tuple[str, ...]:
        """The person's groups here: the provider's (the first `MAX_GROUPS` by name), and
        `admin` for a member of any of `admin_groups` (a provider group of that name alone
        makes no one an admin)."""
        given = set(person.groups)
        admin = bool(given & set(self.config.admin_groups))
        given.discard(ADMIN_GROUP)
        kept = sorted(given)[: MAX_GROUPS - 1]
        return tuple(sorted([*kept, ADMIN_GROUP])) if admin else tuple(kept)

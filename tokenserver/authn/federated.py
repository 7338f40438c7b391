"""Federated logins: a trust's name as the username, a pipeline's OIDC ID token as the password.

Only JWT-shaped passwords are brought here. The token is verified against
the named trust on every use (a signature check, no database write), so a
check is never remembered: an ID token is accepted until it expires or
passes the trust's `max_age`, and never after. The identity is the trust's
name and the token's subject, `<trust>:<sub>`, bounded by the trust's scopes.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError

from authcore.jwt_verify import unverified_claims
from tokenserver.authn.base import MISS, Account, BackendUnavailable, Peeked
from tokenserver.federation.verify import (
    InvalidIDToken,
    KeysUnavailable,
    Trusts,
    Verified,
    looks_like_jwt,
)
from tokenserver.secret import Secret

__all__ = ["BACKEND_NAME", "FederatedBackend", "federated_account"]

log = logging.getLogger(__name__)

BACKEND_NAME = "federation"


def federated_account(verified: Verified, account: Account) -> Account:
    """The identity an ID token proves under the trust `account` stands for."""
    attributes = [
        ("trust", verified.trust),
        ("iss", verified.issuer),
        ("sub", verified.subject),
        ("jti", verified.jti),
    ]
    attributes += [(f"claim:{name}", value) for name, value in sorted(verified.matched.items())]
    return Account(
        f"{verified.trust}:{verified.subject}",
        frozenset(),
        account.fingerprint,
        kind="federated",
        limit=account.limit,
        attributes=tuple(attributes),
    )


class FederatedBackend:
    name = BACKEND_NAME
    remember_checks = False
    # A short JWT-shaped password to an unknown name gets the decoy; a refused
    # one to a trust's name must cost the same.
    checks_bcrypt = False

    def __init__(self, trusts: Trusts) -> None:
        self._trusts = trusts

    def wants(self, password: Secret) -> bool:
        return looks_like_jwt(password.reveal())

    def lookup(self, username: str) -> Account | None:
        try:
            spec = self._trusts.spec(username)
        except SQLAlchemyError:
            raise BackendUnavailable("the trust database cannot be reached") from None
        if spec is None:
            return None
        return Account(spec.name, frozenset(), "", kind="federated", limit=spec.build().scopes)

    def peek(self, username: str) -> Peeked:
        return MISS  # trusts are read afresh, so one removed on any instance holds at once

    def account(self, subject: str) -> Account | None:
        return None  # no refresh tokens: the pipeline's next ID token is its next login

    def check(self, account: Account, password: Secret) -> Account | None:
        try:
            verifier = self._trusts.verifier(account.name)
        except SQLAlchemyError:
            raise BackendUnavailable("the trust database cannot be reached") from None
        except KeysUnavailable as exc:
            raise BackendUnavailable(f"the issuer's keys are unavailable: {exc}") from None
        if verifier is None:
            return None  # removed since the lookup
        try:
            verified = verifier.verify(password.reveal())
        except InvalidIDToken as exc:
            log.info("ID token refused", extra={"trust": account.name, "reason": str(exc)})
            return None
        except KeysUnavailable as exc:
            raise BackendUnavailable(f"the issuer's keys are unavailable: {exc}") from None
        return federated_account(verified, account)

    def exchange(self, token: Secret) -> Account | None:
        """The identity a token proves under the first trust of its issuer that takes it.

        For RFC 8693 token exchange, where no trust is named: the trusts whose
        issuer is the token's (unverified) `iss` are tried in name order.
        """
        value = token.reveal()
        if not looks_like_jwt(value):
            return None
        try:
            names = self._trusts.names_for_issuer(_unverified_issuer(value))
        except SQLAlchemyError:
            raise BackendUnavailable("the trust database cannot be reached") from None
        for name in names:
            account = self.lookup(name)
            if account is not None:
                proven = self.check(account, token)
                if proven is not None:
                    return proven
        return None

    def close(self) -> None:
        pass  # key sets are plain memory


def _unverified_issuer(token: str) -> str:
    """Only to choose which trusts to try; each one verifies the token in full."""
    claims = unverified_claims(token)
    issuer = claims.get("iss") if claims is not None else None
    return issuer.rstrip("/") if isinstance(issuer, str) and len(issuer) <= 1024 else ""

"""The provider's ID token, checked: the one verifier of the core, then what OpenID Connect
asks of a relying party, then the configured conditions.

`verify_jwt` checks the size, an allowed algorithm that fits one of the
provider's keys (so `none` and an HMAC keyed with a public key are refused),
`iss`, `aud` (our client id), `exp`, `iat` and `nbf` with the usual leeway.
Then: the `nonce` is the one this sign-in sent (a token answered to a
refresh has none to check: OpenID Connect Core, 12.2); a token for several audiences
names us as its `azp`; it is no older than a sign-in lasts; the claims meet
every condition of `sso.claims`; the username and groups come from their
claims. The provider's keys are `federation.verify.IssuerKeys`: fetched from
its discovery over HTTPS, again when a token names a key we do not know.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from authcore.jwt_verify import LEEWAY, SignedClaims, UnknownKey, UntrustedJWT, by_kid, verify_jwt
from tokenserver.authz.patterns import Pattern
from tokenserver.federation.verify import InvalidIDToken, IssuerKeys, looks_like_jwt, match_claims
from tokenserver.names import InvalidName, check_name

__all__ = ["MAX_SIGN_IN_AGE", "IDTokenRules", "InvalidIDToken", "SignedInPerson", "check_id_token"]

# A sign-in through the provider is finished within this many seconds, or not at all.
MAX_SIGN_IN_AGE = 600


@dataclass(frozen=True)
class IDTokenRules:
    issuer: str
    client_id: str
    username_claim: str
    groups_claim: str
    claims: Mapping[str, Pattern]


@dataclass(frozen=True)
class SignedInPerson:
    subject: str
    username: str
    groups: tuple[str, ...]
    # The claims the conditions looked at, as the token had them.
    matched: dict[str, str]


def _signed(
    token: str, keys: IssuerKeys, rules: IDTokenRules, now: float, require: tuple[str, ...]
) -> SignedClaims:
    def verify() -> SignedClaims:
        return verify_jwt(
            token,
            by_kid(keys.current),
            issuer=rules.issuer,
            audience=rules.client_id,
            leeway=LEEWAY,
            now=now,
            require=require,
        )

    try:
        try:
            return verify()
        except UnknownKey:
            if not keys.refetch():
                raise
            return verify()
    except UnknownKey:
        raise InvalidIDToken("signed by a key the provider does not publish") from None
    except UntrustedJWT as exc:
        raise InvalidIDToken(str(exc)) from None


def _groups(value: object) -> tuple[str, ...]:
    """The claim's group names that are names here (a list of strings, or one string)."""
    items: Sequence[object] = (
        [value] if isinstance(value, str) else value if isinstance(value, list) else []
    )
    groups = set()
    for item in items:
        if isinstance(item, str):
            try:
                groups.add(check_name(item, "group name"))
            except InvalidName:
                continue  # a group this server cannot name is one no rule can speak of
    return tuple(sorted(groups))


def check_id_token(
    token: str,
    nonce: str | None,
    keys: IssuerKeys,
    rules: IDTokenRules,
    clock: Callable[[], float],
) -> SignedInPerson:
    """Blocking (may fetch keys). `nonce` is the sign-in's, None for a token answered to a
    refresh. InvalidIDToken says why the token is refused (never the token);
    KeysUnavailable when the provider's keys cannot be had."""
    if not looks_like_jwt(token):
        raise InvalidIDToken("not a JWT")
    now = clock()
    require = ("sub", "iat") if nonce is None else ("sub", "iat", "nonce")
    signed = _signed(token, keys, rules, now, require)
    claims = signed.claims
    given = claims.get("nonce")
    if nonce is not None and (
        not isinstance(given, str) or not hmac.compare_digest(given.encode(), nonce.encode())
    ):
        raise InvalidIDToken("the nonce is not this sign-in's")
    aud, azp = claims.get("aud"), claims.get("azp")
    if ((isinstance(aud, list) and len(aud) > 1) or azp is not None) and azp != rules.client_id:
        raise InvalidIDToken("the token was issued to another party (azp)")
    assert signed.iat is not None  # required above
    if now - signed.iat > MAX_SIGN_IN_AGE:
        raise InvalidIDToken("issued too long ago for this sign-in")
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject or len(subject) > 255:
        raise InvalidIDToken("unusable subject")
    username = claims.get(rules.username_claim)
    if not isinstance(username, str) or not username:
        raise InvalidIDToken(f"claim {rules.username_claim} is missing or not a string")
    matched = match_claims(rules.claims, claims)
    return SignedInPerson(subject, username, _groups(claims.get(rules.groups_claim)), matched)

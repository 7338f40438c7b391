"""A token request, parsed: what the grant needs, whichever route it came by.

The routes build one from GET or POST /token (or a web-page session);
`GrantService.grant` reads it and nothing else of the HTTP request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tokenserver.secret import Secret

__all__ = ["DeviceLogin", "ExchangeLogin", "PasswordLogin", "RefreshLogin", "TokenRequest", "Via"]

# How the caller proved itself: Basic on GET, the OAuth2 grant type on POST, or a
# web-page session (the page asks for tokens for its signed-in admin).
Via = Literal[
    "anonymous", "basic", "password", "refresh_token", "token_exchange", "device_code", "session"
]


@dataclass(frozen=True)
class PasswordLogin:
    """A name and a password (or a CI token's name and secret)."""

    username: str
    password: Secret


@dataclass(frozen=True)
class RefreshLogin:
    token: Secret


@dataclass(frozen=True)
class DeviceLogin:
    device_code: Secret  # RFC 8628: its person approves it (or not yet) on the web page


@dataclass(frozen=True)
class ExchangeLogin:
    """RFC 8693: an ID token exchanged for a registry token, no trust named."""

    subject_token: Secret


@dataclass(frozen=True)
class TokenRequest:
    """One token request, parsed: what the protocol needs, whichever route it came by."""

    service: str
    scopes: Sequence[str]
    via: Via
    credentials: PasswordLogin | RefreshLogin | ExchangeLogin | DeviceLogin | None = None
    # Asked for a refresh token (GET offline_token=true, POST access_type=offline).
    offline: bool = False
    client_id: str = ""
    account: str | None = None
    client_ip: str | None = None
    user_agent: str = ""

    @property
    def device_code(self) -> Secret | None:
        """A device's code, when this is its poll (RFC 8628 §3.4)."""
        credentials = self.credentials
        return credentials.device_code if isinstance(credentials, DeviceLogin) else None

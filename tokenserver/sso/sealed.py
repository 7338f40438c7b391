"""The provider's refresh tokens as the database keeps them: sealed (AES-256-GCM).

The key is derived (HKDF-SHA256) from the client secret, which this server
holds outside the database; each sealed value is bound to its person (their
key is the associated data), so a row copied onto another person opens to
nothing. A refresh token is of no use without the client secret anyway (the
provider asks for both); sealed, a copy of the database alone yields not
even the token. A new client secret makes the old values unreadable: their
people are then as if the provider had given no refresh token.
"""

from __future__ import annotations

import base64
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["MAX_REFRESH_TOKEN", "Sealer"]

# A provider's refresh token longer than this is not kept (Entra's are ~1.5 KB).
MAX_REFRESH_TOKEN = 8192
_NONCE = 12


class Sealer:
    __slots__ = ("_aead",)

    def __init__(self, client_secret: str) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=None,
            info=b"tokenserver sso refresh token v1",
        ).derive(client_secret.encode())
        self._aead = AESGCM(key)

    def seal(self, token: str, person_key: str) -> str | None:
        """The sealed token, or None for one too long (or not ASCII) to keep."""
        if len(token) > MAX_REFRESH_TOKEN or not token.isascii():
            return None
        nonce = secrets.token_bytes(_NONCE)
        sealed = self._aead.encrypt(nonce, token.encode(), person_key.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str, person_key: str) -> str | None:
        """The token, or None when it was not sealed for this person with this key."""
        try:
            raw = base64.urlsafe_b64decode(sealed.encode())
            plain = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], person_key.encode())
        except (ValueError, InvalidTag):
            return None
        return plain.decode()

    def __repr__(self) -> str:
        return "Sealer(***)"

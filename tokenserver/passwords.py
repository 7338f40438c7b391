"""Password hashing for the server's own users and htpasswd entries (bcrypt)."""

from __future__ import annotations

from passlib.context import CryptContext

__all__ = ["MAX_PASSWORD_BYTES", "PasswordRejected", "hash_password", "verify_password"]

# bcrypt only reads 72 bytes; a longer password would silently share a hash
# with its prefix, so it is refused when set and never matches when checked.
MAX_PASSWORD_BYTES = 72

_context = CryptContext(schemes=["bcrypt"], bcrypt__rounds=12)


class PasswordRejected(ValueError):
    """A new password cannot be used; the message says why (never the password)."""


def hash_password(password: str, rounds: int | None = None) -> str:
    try:
        raw = password.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, from a JSON \ud800 escape
        raise PasswordRejected("the password is not valid text") from None
    if not raw:
        raise PasswordRejected("the password is empty")
    if len(raw) > MAX_PASSWORD_BYTES:
        raise PasswordRejected(f"the password is longer than {MAX_PASSWORD_BYTES} bytes")
    if b"\x00" in raw:
        raise PasswordRejected("the password contains a NUL character")
    hashed: str = (
        _context.hash(password) if rounds is None else _context.hash(password, rounds=rounds)
    )
    return hashed


def verify_password(password: str, hashed: str) -> bool:
    """Constant-time bcrypt check; any unusable input is simply not a match."""
    raw = password.encode("utf-8", "surrogatepass")
    if not raw or len(raw) > MAX_PASSWORD_BYTES or b"\x00" in raw:
        return False
    try:
        return bool(_context.verify(password, hashed))
    except (ValueError, TypeError):
        return False


def is_bcrypt(hashed: str) -> bool:
    return bool(_context.identify(hashed, required=False) == "bcrypt")

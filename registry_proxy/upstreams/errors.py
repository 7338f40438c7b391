"""What can go wrong talking to an upstream registry, one class for each answer a caller gives.

Every message is written here from what is safe to show (the upstream's
origin and path, a status, a bound): never a credential, a token or a query
string (a redirect's signed URL is a credential of its own).
"""

from __future__ import annotations

__all__ = [
    "UpstreamDenied",
    "UpstreamError",
    "UpstreamInvalid",
    "UpstreamNotFound",
    "UpstreamUnavailable",
]


class UpstreamError(Exception):
    """Base of every error the upstream client raises on purpose."""


class UpstreamUnavailable(UpstreamError):
    """Not reached, too slow, 5xx or 429; `retry_after` is its `Retry-After` in seconds,
    `status` the HTTP status it answered (None when it did not answer)."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class UpstreamNotFound(UpstreamError):
    """404: the upstream holds no such manifest or blob."""


class UpstreamDenied(UpstreamError):
    """401 or 403 with the credentials configured (or none, when none are)."""


class UpstreamInvalid(UpstreamError):
    """An answer out of protocol: malformed, too large, a bad challenge or token answer."""

"""What an upstream's answer means: its status as an error, its bounded body, its safe name.

Bodies kept in memory (a manifest, a token answer) are read with a cap:
`Content-Length` first, so a huge one is refused before a byte of it is
read, then counted while reading, for a chunked one that never ends. They
are read as sent: a `Content-Encoding` we did not ask for is refused rather
than inflated.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
from collections.abc import Iterator

import httpx

from authcore import capped
from registry_proxy.upstreams import errors

__all__ = [
    "MAX_RETRY_AFTER",
    "content_length",
    "describe",
    "network_errors",
    "read_capped",
    "refusal",
    "retry_after",
]

# A longer wait than this is an upstream's nonsense; the caller's own clients get this at most.
MAX_RETRY_AFTER = 3600.0
# Digits beyond this are no length a caller could accept anyway (and no int to parse at length).
_MAX_LENGTH_DIGITS = 18
_DESCRIBED_CHARS = 200


def describe(url: httpx.URL) -> str:
    """The URL without its query or user info, cut short: what messages may name."""
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{url.host}{port}{url.path}"[:_DESCRIBED_CHARS]


def content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length", "").strip()
    if not value.isascii() or not value.isdigit():
        return None
    return int(value) if len(value) <= _MAX_LENGTH_DIGITS else 10**_MAX_LENGTH_DIGITS


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """The whole body of `response` (opened as a stream), or UpstreamInvalid past `limit` bytes."""
    what = describe(response.request.url)
    length = content_length(response)
    if length is not None and length > limit:
        raise errors.UpstreamInvalid(
            f"{what}: Content-Length {length} is over the limit of {limit} bytes"
        )
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise errors.UpstreamInvalid(
            f"{what}: Content-Encoding {encoding[:40]!r}, asked for identity"
        )
    body = await capped.read_capped(response.aiter_raw(), limit)
    if body is None:
        raise errors.UpstreamInvalid(f"{what}: the body is over the limit of {limit} bytes")
    return body


def retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (delta-seconds or an HTTP date), within 0..MAX_RETRY_AFTER."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        seconds = float(value) if len(value) <= _MAX_LENGTH_DIGITS else MAX_RETRY_AFTER
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def refusal(response: httpx.Response) -> errors.UpstreamError | None:
    """The error a status other than 200 means (a 401 only once it was answered), else None."""
    status, what = response.status_code, describe(response.request.url)
    if status == 200:
        return None
    if status == 404:
        return errors.UpstreamNotFound(f"{what}: not found (404)")
    if status in (401, 403):
        return errors.UpstreamDenied(f"{what}: denied ({status})")
    if status == 429 or status >= 500:
        return errors.UpstreamUnavailable(
            f"{what}: HTTP {status}", retry_after=retry_after(response), status=status
        )
    return errors.UpstreamInvalid(f"{what}: unexpected HTTP {status}")


@contextlib.contextmanager
def network_errors(what: str, timeout: float) -> Iterator[None]:
    """httpx's errors, and a deadline's TimeoutError, as ours (without their chain)."""
    try:
        yield
    except (TimeoutError, httpx.TimeoutException):
        raise errors.UpstreamUnavailable(f"{what}: no answer within {timeout:g} s") from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise errors.UpstreamInvalid(f"{what}: {type(exc).__name__}") from None
    except httpx.HTTPError as exc:
        raise errors.UpstreamUnavailable(f"{what}: {type(exc).__name__}") from None

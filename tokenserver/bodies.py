"""Reading request bodies with a size limit, so no client decides how much we hold."""

from __future__ import annotations

import re

from starlette.requests import ClientDisconnect, Request

from tokenserver.errors import ClientGone, InvalidRequest, PayloadTooLarge

__all__ = ["has_body", "read_limited"]

# Longer than any size we would accept, short enough for int() (which stops at 4 300 digits).
_LENGTH = re.compile(r"[0-9]{1,18}")


def has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return (length is not None and length != "0") or "transfer-encoding" in request.headers


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body, or PayloadTooLarge as soon as it is known to exceed `limit` bytes.

    Refusals carry `close`: the rest of the body is not worth reading, so the
    connection is closed after the answer instead of draining it.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not _LENGTH.fullmatch(declared):
            raise InvalidRequest("malformed Content-Length", close=True)
        if int(declared) > limit:
            raise PayloadTooLarge(f"the body exceeds {limit} bytes", close=True)
    body = bytearray()
    try:
        # Chunked bodies carry no length; count as they arrive.
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise PayloadTooLarge(f"the body exceeds {limit} bytes", close=True)
    except ClientDisconnect:
        raise ClientGone("the client went away while sending the body") from None
    return bytes(body)

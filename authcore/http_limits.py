"""How much one HTTP client may make a server hold: head size, head time, body stalls.

`Limits` is what the protocol enforces; `ServingSettings` is the same four
knobs as configuration fields, with their ranges, shared by both services'
settings so the two cannot drift apart.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["Limits", "ServingSettings"]

DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_HEADER_TIMEOUT = 10.0
# A client on a congested link can go quiet for seconds between TCP windows,
# and a proxy in front may buffer; a minute with not one body byte is a stalled
# or hostile client, not a slow one. Large uploads are unaffected: the clock
# restarts with every read, however long the whole body takes.
DEFAULT_BODY_TIMEOUT = 60.0


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT


class ServingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Request line and headers together, in bytes as received; more gets 431.
    # Below 1 KiB not even a token-bearing request fits; above 1 MiB a client
    # could make every connection hold a megabyte before its request starts.
    max_header_bytes: int = Field(default=DEFAULT_MAX_HEADER_BYTES, ge=1024, le=1024 * 1024)
    # Seconds from connecting (or from a request's first byte) to its last header.
    header_timeout: float = Field(default=DEFAULT_HEADER_TIMEOUT, gt=0, le=300)
    # Seconds an incomplete body may go without a byte before the connection closes.
    body_timeout: float = Field(default=DEFAULT_BODY_TIMEOUT, gt=0, le=3600)
    # Addresses or networks of reverse proxies whose X-Forwarded-For is
    # believed; without them the client address is the peer's, so no client
    # can choose the address its requests are logged and judged by.
    trusted_proxies: list[str] = []

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            if entry == "*":
                continue
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address, a network such as 10.0.0.0/8, or *"
                ) from None
        return value

    @property
    def limits(self) -> Limits:
        return Limits(self.max_header_bytes, self.header_timeout, self.body_timeout)

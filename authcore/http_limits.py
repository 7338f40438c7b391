"""Where a service listens and how much one HTTP client may make it hold.

`Limits` is what the protocol enforces (head size, head time, body stalls);
`ServingSettings` is the listen address, TLS files, those knobs with their
ranges and the trusted proxies as configuration fields, shared by both
services' settings so the two cannot drift apart.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["Limits", "ServingSettings", "TLSFiles"]

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


class TLSFiles(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    certificate: Path | None = None
    key: Path | None = None


class ServingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # HOST:PORT; each service declares its own default.
    addr: str = "127.0.0.1:8000"
    tls: TLSFiles = TLSFiles()

    # Request line and headers together, in bytes as received; more gets 431.
    # Below 1 KiB not even a token-bearing request fits; above 1 MiB a client
    # could make every connection hold a megabyte before its request starts.
    max_header_bytes: int = Field(default=DEFAULT_MAX_HEADER_BYTES, ge=1024, le=1024 * 1024)
    # Seconds from connecting (or from a request's first byte) to its last header.
    header_timeout: float = Field(default=DEFAULT_HEADER_TIMEOUT, gt=0, le=300)
    # Seconds an incomplete body may go without a byte before the connection closes.
    body_timeout: float = Field(default=DEFAULT_BODY_TIMEOUT, gt=0, le=3600)
    # Worker processes, each a full server on the same socket (see serve.py).
    workers: int = Field(default=1, ge=1, le=64)
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

    # What an address without a host (`:5000`, as the Go registry writes it)
    # listens on; None: a host is required.
    empty_host: ClassVar[str | None] = None

    @field_validator("addr")
    @classmethod
    def _addr(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT")
        if not host and cls.empty_host is None:
            raise ValueError("must be HOST:PORT")
        return value

    @property
    def host(self) -> str:
        return self.addr.rpartition(":")[0].strip("[]") or self.empty_host or ""

    @property
    def port(self) -> int:
        return int(self.addr.rpartition(":")[2])

    @property
    def limits(self) -> Limits:
        return Limits(self.max_header_bytes, self.header_timeout, self.body_timeout)

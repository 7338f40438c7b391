"""What the configuration says of other registries served through this one: the Go
registry's `proxy` section (the whole registry a pull-through cache of one upstream) and
`upstreams` (several, each under a name prefix, beside local repositories)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    field_validator,
    model_validator,
)

from authcore.duration import parse_duration
from registry_proxy.reference import InvalidName, check_name
from registry_proxy.upstreams.exec_credentials import helper_argv

__all__ = ["DEFAULT_TTL", "ExecConfig", "ProxyConfig", "UpstreamConfig"]

# The Go registry's default: cached content expires a week after it was fetched.
DEFAULT_TTL = dt.timedelta(hours=168)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ttl(value: object) -> dt.timedelta | None:
    """A Go duration; 0 (or "0") means cached content never expires, as in the Go registry."""
    if value is None or isinstance(value, dt.timedelta):
        return value
    if value in (0, "0"):
        return None
    if not isinstance(value, str):
        raise ValueError("must be a duration such as 10m, 24h or 168h (0: never expires)")
    duration = parse_duration(value)
    if duration <= dt.timedelta(0):
        raise ValueError("must be a positive duration (0: never expires)")
    return duration


TTL = Annotated[dt.timedelta | None, BeforeValidator(_ttl)]


def _registry_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(value) > 1024:
        raise ValueError("must be an http:// or https:// URL")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must be a URL without credentials, query or fragment")
    return value.rstrip("/")


def _lifetime(value: object) -> dt.timedelta | None:
    """A Go duration, 0 included (the helper runs for every request)."""
    if value is None or isinstance(value, dt.timedelta):
        return value
    if value == 0 and not isinstance(value, bool):
        return dt.timedelta(0)
    if not isinstance(value, str):
        raise ValueError("must be a duration such as 10m or 12h (0: run for every request)")
    duration = parse_duration(value)
    if duration < dt.timedelta(0):
        raise ValueError("must not be negative (0: run for every request)")
    return duration


class ExecConfig(_Section):
    """Credentials from a docker credential helper, as the Go registry's `proxy.exec` runs one."""

    command: str = Field(min_length=1, max_length=4096)
    # None: the helper runs once; 0: for every request; else its answer is kept this long.
    lifetime: Annotated[dt.timedelta | None, BeforeValidator(_lifetime)] = None

    @field_validator("command")
    @classmethod
    def _command(cls, value: str) -> str:
        helper_argv(value)
        return value


def _exec_alone(exec_: ExecConfig | None, keys: dict[str, object]) -> None:
    given = [key for key, value in keys.items() if value is not None]
    if exec_ is not None and given:
        raise ValueError(f"exec excludes {', '.join(given)}: the helper gives the credentials")


class ProxyConfig(_Section):
    """The Go registry's `proxy`: every repository is pulled through from `remoteurl`."""

    remoteurl: str
    username: str | None = Field(default=None, max_length=1024)
    password: SecretStr | None = None
    ttl: TTL = DEFAULT_TTL
    exec: ExecConfig | None = None

    @field_validator("remoteurl")
    @classmethod
    def _url(cls, value: str) -> str:
        return _registry_url(value)

    @model_validator(mode="after")
    def _pair(self) -> ProxyConfig:
        _exec_alone(self.exec, {"username": self.username, "password": self.password})
        if (self.username is None) != (self.password is None):
            raise ValueError("set username and password together")
        return self


class UpstreamConfig(_Section):
    """One upstream: `/v2/<prefix>/<name>` is `<url>/v2/<name>`."""

    prefix: str
    url: str
    username: str | None = Field(default=None, max_length=1024)
    password: SecretStr | None = None
    password_file: Path | None = None
    exec: ExecConfig | None = None
    ttl: TTL = DEFAULT_TTL
    # false: a gateway that stores nothing, only checks our tokens in front of the upstream.
    cache: StrictBool = True
    # Which names under the prefix may be pulled (shell-style patterns; none: all).
    repositories: list[Annotated[str, Field(min_length=1, max_length=255)]] = []
    # Seconds an exchange with the upstream may take (a blob's: between two reads).
    timeout: float = Field(default=30.0, gt=0, le=600)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _registry_url(value)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        try:
            return check_name(value)
        except InvalidName:
            raise ValueError(
                "must be a repository name path (lowercase components joined by /)"
            ) from None

    @model_validator(mode="after")
    def _credentials(self) -> UpstreamConfig:
        given = {"username": self.username, "password": self.password}
        _exec_alone(self.exec, given | {"password_file": self.password_file})
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password or password_file, not both")
        has_password = self.password is not None or self.password_file is not None
        if (self.username is not None) != has_password:
            raise ValueError("set username with password or password_file")
        return self

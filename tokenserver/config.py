"""The token server's settings: one model, read from YAML, overridable by environment.

Every key can be set as `TOKENSERVER_<SECTION>_<KEY>` (e.g.
`TOKENSERVER_TOKEN_EXPIRATION=600`); values are read as YAML, so lists and
booleans work too, except for plain string and path keys, which take the value
as it is (`[::1]:5001`, `*`). Unknown keys and bad values stop the start-up
with a message naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tokenserver.keys import ALGORITHMS
from tokenserver.settings import ConfigError, load_settings

__all__ = ["Config", "ConfigError", "load_config"]

ENV_PREFIX = "TOKENSERVER_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TLSConfig(_Section):
    certificate: Path | None = None
    key: Path | None = None


class ServerConfig(_Section):
    addr: str = "127.0.0.1:5001"
    tls: TLSConfig = TLSConfig()
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)

    @field_validator("addr")
    @classmethod
    def _addr(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT")
        return value

    @property
    def host(self) -> str:
        return self.addr.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.addr.rpartition(":")[2])


class TokenConfig(_Section):
    issuer: str = "tokenserver"
    service: str | list[str] = "registry"
    expiration: int = Field(default=300, ge=60, le=86400)
    keys_dir: Path = Path("keys")
    algorithm: Literal["ES256", "ES384", "ES512", "RS256", "RS384", "RS512"] = "ES256"
    signing_key: str | None = None
    x5c: bool = False
    refresh_expiration: int = Field(default=90 * 86400, ge=60)

    @property
    def services(self) -> tuple[str, ...]:
        return (self.service,) if isinstance(self.service, str) else tuple(self.service)

    @field_validator("service")
    @classmethod
    def _service(cls, value: str | list[str]) -> str | list[str]:
        items = [value] if isinstance(value, str) else value
        if not items or not all(items):
            raise ValueError("needs at least one non-empty service name")
        return value


class DatabaseConfig(_Section):
    url: str = "sqlite:///tokenserver.db"


class UsersConfig(_Section):
    htpasswd: Path | None = None
    credential_cache_ttl: float = Field(default=60.0, ge=0, le=3600)


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(_Section):
    server: ServerConfig = ServerConfig()
    token: TokenConfig = TokenConfig()
    database: DatabaseConfig = DatabaseConfig()
    users: UsersConfig = UsersConfig()
    log: LogConfig = LogConfig()


assert set(ALGORITHMS) == set(TokenConfig.model_fields["algorithm"].annotation.__args__)  # type: ignore[union-attr]


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the YAML file (if any), apply environment overrides, validate."""
    config = load_settings(Config, ENV_PREFIX, path, environ)
    return config if path is None else _relative_to(config, path.parent)


def _relative_to(config: Config, base: Path) -> Config:
    """Paths in a config file are relative to that file, as a reader expects."""

    def fix(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else base / p

    url = config.database.url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rel = url[len("sqlite:///") :]
        if rel and rel != ":memory:":
            url = f"sqlite:///{base / rel}"
    return config.model_copy(
        update={
            "token": config.token.model_copy(update={"keys_dir": fix(config.token.keys_dir)}),
            "users": config.users.model_copy(update={"htpasswd": fix(config.users.htpasswd)}),
            "database": config.database.model_copy(update={"url": url}),
            "server": config.server.model_copy(
                update={
                    "tls": TLSConfig(
                        certificate=fix(config.server.tls.certificate),
                        key=fix(config.server.tls.key),
                    )
                }
            ),
        }
    )

"""The token server's settings: one model, read from YAML, overridable by environment.

Every key can be set as `TOKENSERVER_<SECTION>_<KEY>` (e.g.
`TOKENSERVER_TOKEN_EXPIRATION=600`); values are read as YAML, so lists and
booleans work too, except for plain string and path keys, which take the value
as it is (`[::1]:5001`, `*`). Unknown keys and bad values stop the start-up
with a message naming the key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tokenserver.keys import ALGORITHMS

__all__ = ["Config", "ConfigError", "load_config"]

ENV_PREFIX = "TOKENSERVER_"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key."""


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


def _env_path(model: type[BaseModel], parts: list[str]) -> list[str] | None:
    """Map `TOKEN_KEYS_DIR` onto the field path `token.keys_dir`."""
    if not parts:
        return None
    for n in range(len(parts), 0, -1):
        name = "_".join(parts[:n])
        field = model.model_fields.get(name)
        if field is None:
            continue
        rest = parts[n:]
        annotation = field.annotation
        if not rest:
            return [name]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            sub = _env_path(annotation, rest)
            if sub is not None:
                return [name, *sub]
    return None


# Keys whose environment value is taken verbatim rather than parsed as YAML.
_VERBATIM: tuple[object, ...] = (str, str | None, Path, Path | None)


def _annotation(path: list[str]) -> object:
    model: type[BaseModel] = Config
    for name in path[:-1]:
        model = model.model_fields[name].annotation  # type: ignore[assignment]
    return model.model_fields[path[-1]].annotation


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for var, raw in sorted(environ.items()):
        if not var.startswith(ENV_PREFIX) or var == f"{ENV_PREFIX}CONFIG":
            continue
        path = _env_path(Config, var[len(ENV_PREFIX) :].lower().split("_"))
        if path is None:
            raise ConfigError(f"{var}: no such configuration key")
        node = data
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        if not raw or _annotation(path) in _VERBATIM:
            node[path[-1]] = raw
            continue
        try:
            node[path[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{var}: not a valid value") from exc


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{key}: {msg}")
    return "invalid configuration: " + "; ".join(lines)


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the YAML file (if any), apply environment overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        data = loaded or {}
    _apply_env(data, os.environ if environ is None else environ)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    if path is not None:
        config = _relative_to(config, path.parent)
    return config


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

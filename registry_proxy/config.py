"""The registry service's settings: the Go registry's key names where they overlap.

Read from YAML; every key can be overridden as `REGISTRY_PROXY_<PATH>`
(`REGISTRY_PROXY_HTTP_ADDR=127.0.0.1:5000`). Unknown keys and bad values stop
the start-up with a message naming the key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    model_validator,
)

from authcore.duration import parse_duration
from authcore.http_limits import ServingSettings, TLSFiles
from authcore.regex import InvalidPattern, compile_pattern
from authcore.settings import ConfigError, load_settings
from registry_proxy.storage.s3_settings import S3Settings
from registry_proxy.storage.validation import ManifestRules, URLMatcher
from registry_proxy.upstreams.settings import ProxyConfig, UpstreamConfig

__all__ = ["Config", "ConfigError", "load_config"]

ENV_PREFIX = "REGISTRY_PROXY_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricsConfig(_Section):
    # GET /metrics (Prometheus text format, no auth) on the main port.
    enabled: bool = True


class HTTPConfig(ServingSettings):
    """Also `tls`, `max_header_bytes`, `header_timeout`, `body_timeout`, `trusted_proxies`."""

    empty_host = "0.0.0.0"

    addr: str = "127.0.0.1:5000"
    metrics: MetricsConfig = MetricsConfig()
    # Accepted for compatibility with Go registry configs; unused.
    secret: str | None = None
    # Seconds to let requests in flight finish at shutdown before closing them.
    draintimeout: int = Field(default=10, ge=0, le=3600)
    # Request bodies (blob chunks, manifests) this process takes into storage at once, and
    # of those, one token subject's; more are refused 429 before their body is read.
    max_uploads: int = Field(default=256, ge=1, le=100_000)
    max_uploads_per_subject: int = Field(default=64, ge=1, le=100_000)


class FilesystemConfig(_Section):
    rootdirectory: Path = Path("/var/lib/registry")


class DeleteConfig(_Section):
    enabled: bool = False


class RedirectConfig(_Section):
    # The Go registry's key. Off by default here (the Go registry defaults to on):
    # a redirect sends clients to the store itself, which must then be reachable.
    disable: bool = True


def _go_duration(value: object) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a duration such as 90s, 2h, 168h or 1h30m")
    duration = parse_duration(value)
    if duration <= dt.timedelta(0):
        raise ValueError("must be a positive duration")
    return duration


GoDuration = Annotated[dt.timedelta, BeforeValidator(_go_duration)]


class UploadPurgingConfig(_Section):
    """The Go registry's `storage.maintenance.uploadpurging`, with its defaults."""

    enabled: StrictBool = True
    # Sessions started longer ago than this are deleted.
    age: GoDuration = dt.timedelta(hours=168)
    # Time between purges (the first comes after a random delay of at most this, or an hour).
    interval: GoDuration = dt.timedelta(hours=24)
    # Only log what would be deleted.
    dryrun: StrictBool = False


class ReadOnlyConfig(_Section):
    # Every write answers 405; this instance changes nothing in storage (no purging either).
    enabled: StrictBool = False


class MaintenanceConfig(_Section):
    uploadpurging: UploadPurgingConfig = UploadPurgingConfig()
    readonly: ReadOnlyConfig = ReadOnlyConfig()


class ProxyCacheConfig(_Section):
    # Bytes the upstreams' cached blobs may add up to after `registry-proxy gc`; unset: no
    # bound. Past it gc unlinks the least recently used upstream content first.
    max_bytes: int | None = Field(default=None, ge=0)


class StorageConfig(_Section):
    filesystem: FilesystemConfig | None = None
    s3: S3Settings | None = None
    memory: dict[str, Any] | None = None
    delete: DeleteConfig = DeleteConfig()
    redirect: RedirectConfig = RedirectConfig()
    maintenance: MaintenanceConfig = MaintenanceConfig()
    proxycache: ProxyCacheConfig = ProxyCacheConfig()

    @model_validator(mode="after")
    def _one_driver(self) -> StorageConfig:
        configured = [self.filesystem, self.s3, self.memory]
        if sum(section is not None for section in configured) > 1:
            raise ValueError("configure one storage driver: filesystem, s3 or memory")
        return self

    @property
    def driver(self) -> Literal["filesystem", "s3", "memory"]:
        if self.memory is not None:
            return "memory"
        return "s3" if self.s3 is not None else "filesystem"

    def driver_options(self) -> dict[str, Any]:
        """The keyword arguments of `storage.make_driver(self.driver, ...)`."""
        if self.s3 is not None:
            options = self.s3.model_dump()
            secret = self.s3.secretkey
            options["secretkey"] = None if secret is None else secret.get_secret_value()
            return options
        if self.memory is not None:
            return {}
        filesystem = self.filesystem or FilesystemConfig()
        return {"root": filesystem.rootdirectory}


class TokenAuthConfig(_Section):
    realm: str
    service: str
    issuer: str
    rootcertbundle: Path | None = None
    jwks: str | None = None
    leeway: int = Field(default=60, ge=0, le=600)
    jwks_min_refresh: float = Field(default=30.0, ge=0)

    @model_validator(mode="after")
    def _keys(self) -> TokenAuthConfig:
        if self.rootcertbundle is None and self.jwks is None:
            raise ValueError("needs rootcertbundle or jwks (or both)")
        return self


class AuthConfig(_Section):
    token: TokenAuthConfig


def _patterns(value: object) -> list[str]:
    """A list of RE2 (Go `regexp`) patterns, each compiled once to be sure it is one."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise ValueError("must be a list of regular expressions")
    for index, pattern in enumerate(value):
        try:
            compile_pattern(pattern)
        except InvalidPattern as exc:
            raise ValueError(f"[{index}] {pattern[:100]!r}: {exc}") from None
    return value


Patterns = Annotated[list[str], BeforeValidator(_patterns)]


def _any_of(patterns: list[str]) -> URLMatcher | None:
    if not patterns:
        return None
    # One pass over the URL, as the Go registry joins them.
    return compile_pattern("|".join(f"(?:{p})" for p in patterns)).search


class URLValidationConfig(_Section):
    """Regular expressions (RE2, Go's syntax) on the `urls` of foreign layers."""

    allow: Patterns = []
    deny: Patterns = []


class PlatformConfig(_Section):
    os: str = Field(min_length=1)
    architecture: str = Field(min_length=1)


def _lowercase(value: object) -> object:
    # The Go registry's own example writes `List`.
    return value.lower() if isinstance(value, str) else value


class IndexValidationConfig(_Section):
    # all: every child of a pushed index must exist; none: none need; list: those whose
    # platform is in `platformlist` (all of them if the list is empty, as in the Go registry).
    platforms: Annotated[Literal["all", "none", "list"], BeforeValidator(_lowercase)] = "all"
    platformlist: list[PlatformConfig] = []


class ManifestValidationConfig(_Section):
    urls: URLValidationConfig = URLValidationConfig()
    indexes: IndexValidationConfig = IndexValidationConfig()


class ValidationConfig(_Section):
    """The Go registry's `validation` section."""

    # The older switch, kept by the Go registry beside `disabled`: `enabled: true` wins.
    enabled: StrictBool | None = None
    disabled: StrictBool = False
    manifests: ManifestValidationConfig = ManifestValidationConfig()

    def rules(self) -> ManifestRules:
        if not (self.enabled or not self.disabled):
            return ManifestRules.unchecked()
        urls, indexes = self.manifests.urls, self.manifests.indexes
        allow, deny = _any_of(urls.allow), _any_of(urls.deny)
        if allow is None and deny is not None:
            # What the Go registry does (its documentation says such a push fails): a deny
            # list alone lets every other URL through.
            allow = ManifestRules.unchecked().allow
        return ManifestRules(
            # Neither list: no URL passes.
            **({"allow": allow} if allow is not None else {}),
            **({"deny": deny} if deny is not None else {}),
            children=indexes.platforms,
            platforms=frozenset((p.os, p.architecture) for p in indexes.platformlist),
        )


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(_Section):
    version: str | float | None = None
    log: LogConfig = LogConfig()
    http: HTTPConfig = HTTPConfig()
    storage: StorageConfig = StorageConfig()
    validation: ValidationConfig = ValidationConfig()
    auth: AuthConfig
    # The Go registry's pull-through cache of one upstream (then nothing can be pushed).
    proxy: ProxyConfig | None = None
    # Other registries served under name prefixes, beside local repositories.
    upstreams: list[UpstreamConfig] = Field(default=[], max_length=100)

    @model_validator(mode="after")
    def _shared_storage(self) -> Config:
        if self.http.workers > 1 and self.storage.driver == "memory":
            # Each worker would hold a store of its own.
            raise ValueError("http.workers > 1 needs storage every worker shares, not memory")
        return self

    @model_validator(mode="after")
    def _one_kind_of_upstream(self) -> Config:
        if self.proxy is not None and self.upstreams:
            raise ValueError("proxy makes every name an upstream's: it excludes upstreams")
        prefixes = [u.prefix for u in self.upstreams]
        repeated = sorted({p for p in prefixes if prefixes.count(p) > 1})
        if repeated:
            raise ValueError(f"upstreams: prefix {repeated[0]} is given twice")
        return self


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    config = load_settings(Config, ENV_PREFIX, path, environ)
    if path is None:
        return config
    base = path.parent

    def fix(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else base / p

    storage = config.storage
    if storage.filesystem is not None:
        root = storage.filesystem.rootdirectory
        root = root if root.is_absolute() else base / root
        storage = storage.model_copy(update={"filesystem": FilesystemConfig(rootdirectory=root)})
    token = config.auth.token
    jwks = token.jwks
    if jwks and "://" not in jwks:
        jwks = str(fix(Path(jwks)))
    token = token.model_copy(update={"rootcertbundle": fix(token.rootcertbundle), "jwks": jwks})
    upstreams = [
        u.model_copy(update={"password_file": fix(u.password_file)}) for u in config.upstreams
    ]
    return config.model_copy(
        update={
            "upstreams": upstreams,
            "storage": storage,
            "auth": AuthConfig(token=token),
            "http": config.http.model_copy(
                update={
                    "tls": TLSFiles(
                        certificate=fix(config.http.tls.certificate), key=fix(config.http.tls.key)
                    )
                }
            ),
        }
    )

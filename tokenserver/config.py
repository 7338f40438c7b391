"""The token server's settings: one model, read from YAML, overridable by environment.

Every key can be set as `TOKENSERVER_<SECTION>_<KEY>` (e.g.
`TOKENSERVER_TOKEN_EXPIRATION=600`); values are read as YAML, so lists and
booleans work too, except for plain string and path keys, which take the value
as it is (`[::1]:5001`, `*`). Unknown keys and bad values stop the start-up
with a message naming the key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from authcore.duration import MAX_SECONDS, DurationError, parse_seconds
from authcore.http_limits import ServingSettings, TLSFiles
from authcore.jwk import ALGORITHMS
from authcore.settings import ConfigError, load_settings
from tokenserver.authz.acl import ACLEntry
from tokenserver.authz.patterns import Pattern, PatternError
from tokenserver.federation.trusts import CLAIM_NAME, InvalidTrust, TrustSpec, check_ca_file
from tokenserver.names import InvalidName, check_name
from tokenserver.throttle import DEFAULT_IPV6_PREFIX

__all__ = ["Config", "ConfigError", "load_config"]

ENV_PREFIX = "TOKENSERVER_"


def _server_url(value: str, schemes: tuple[str, ...]) -> SplitResult:
    """`value` split, refused unless it names a host under one of `schemes`."""
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError("must be " + " or ".join(f"{s}://HOST[:PORT]" for s in schemes))
    return parts


def _read_secret(path: Path, key: str) -> str:
    """The text of a secret's file; ConfigError naming `key` if it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8"
        raise ConfigError(f"{key}: {reason}") from None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(ServingSettings):
    """Also `tls`, `max_header_bytes`, `header_timeout`, `body_timeout`, `trusted_proxies`."""

    addr: str = "127.0.0.1:5001"
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)


class TokenConfig(_Section):
    issuer: str = "tokenserver"
    service: str | list[str] = "registry"
    expiration: int = Field(default=300, ge=60, le=86400)
    keys_dir: Path = Path("keys")
    algorithm: str = "ES256"
    signing_key: str | None = None
    # The certificate in the JWT header: how registry 3 finds a key of its `rootcertbundle`
    # (2.8 takes it too). Off only for a registry 3 that trusts a `jwks` file alone.
    x5c: bool = True
    refresh_expiration: int = Field(default=90 * 86400, ge=60)

    @property
    def services(self) -> tuple[str, ...]:
        return (self.service,) if isinstance(self.service, str) else tuple(self.service)

    @field_validator("algorithm")
    @classmethod
    def _algorithm(cls, value: str) -> str:
        if value not in ALGORITHMS:
            raise ValueError(f"must be one of {', '.join(ALGORITHMS)}")
        return value

    @field_validator("service")
    @classmethod
    def _service(cls, value: str | list[str]) -> str | list[str]:
        items = [value] if isinstance(value, str) else value
        if not items or not all(items):
            raise ValueError("needs at least one non-empty service name")
        return value


class DatabaseConfig(_Section):
    url: str = "sqlite:///tokenserver.db"
    # Connections kept open: every password login reads the throttle counts, so
    # fewer than the requests served at once means opening one per request.
    pool_size: int = Field(default=20, ge=1, le=1000)


class UsersConfig(_Section):
    htpasswd: Path | None = None
    credential_cache_ttl: float = Field(default=60.0, ge=0, le=3600)
    # bcrypt work factor of the passwords the server sets (each step doubles the cost).
    bcrypt_cost: int = Field(default=12, ge=4, le=16)


Backend = Literal["htpasswd", "database", "ldap"]


class AuthnConfig(_Section):
    # None: every configured backend, in this order: htpasswd, database, ldap.
    order: list[Backend] | None = None

    @field_validator("order")
    @classmethod
    def _order(cls, value: list[Backend] | None) -> list[Backend] | None:
        if value is not None:
            if not value:
                raise ValueError("needs at least one backend")
            if len(set(value)) != len(value):
                raise ValueError("names a backend twice")
        return value


class LDAPConfig(_Section):
    url: str | None = None
    start_tls: bool = False
    ca_file: Path | None = None
    bind_dn: str | None = None
    bind_password: SecretStr | None = None
    bind_password_file: Path | None = None
    base_dn: str = ""
    user_filter: str = "(uid={username})"
    # The entry's attribute whose value becomes the account name (the token's `sub`).
    username_attribute: str = "uid"
    group_attribute: str | None = None
    group_filter: str | None = None
    group_base_dn: str | None = None
    timeout: int = Field(default=5, ge=1, le=120)  # whole seconds: what ldap3 takes
    pool_size: int = Field(default=8, ge=1, le=256)
    cache_ttl: float = Field(default=60.0, ge=0, le=3600)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = _server_url(value, ("ldap", "ldaps"))
            try:
                parts.port  # noqa: B018 - raises on a bad port
            except ValueError:
                raise ValueError("has a bad port") from None
        return value

    @field_validator("user_filter")
    @classmethod
    def _user_filter(cls, value: str) -> str:
        if "{username}" not in value or not (value.startswith("(") and value.endswith(")")):
            raise ValueError("must be a parenthesised filter containing {username}")
        return value

    @field_validator("username_attribute")
    @classmethod
    def _username_attribute(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,63}", value):
            raise ValueError("must be an LDAP attribute name (e.g. uid)")
        return value

    @field_validator("group_filter")
    @classmethod
    def _group_filter(cls, value: str | None) -> str | None:
        if value is not None and not (value.startswith("(") and value.endswith(")")):
            raise ValueError("must be a parenthesised filter (with {dn} or {username})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LDAPConfig:
        if self.group_attribute and self.group_filter:
            raise ValueError("set group_attribute or group_filter, not both")
        if self.bind_password is not None and self.bind_password_file is not None:
            raise ValueError("set bind_password or bind_password_file, not both")
        if self.url is not None:
            if not self.base_dn:
                raise ValueError("base_dn is required with url")
            if self.start_tls and self.url.startswith("ldaps:"):
                raise ValueError("start_tls is for ldap:// URLs; ldaps:// is TLS already")
            if not self.group_attribute and not self.group_filter:
                return self.model_copy(update={"group_attribute": "memberOf"})
        return self

    def bind_password_value(self) -> str | None:
        if self.bind_password_file is not None:
            text = _read_secret(self.bind_password_file, "ldap.bind_password_file")
            return text.removesuffix("\n").removesuffix("\r")
        return None if self.bind_password is None else self.bind_password.get_secret_value()


class TrustConfig(_Section):
    """A federation trust (see `tokenserver.federation.trusts`, which checks every field)."""

    name: str
    issuer: str
    audience: str
    scopes: list[str]
    claims: dict[str, str] = {}
    jwks_uri: str | None = None
    jwks_file: Path | None = None
    ca_file: Path | None = None
    max_age: int = 3600

    def spec(self) -> TrustSpec:
        # The trust's fields only: the admin API's answer extends this model.
        return TrustSpec(**self.model_dump(include=set(TrustConfig.model_fields)))

    @model_validator(mode="after")
    def _valid(self) -> TrustConfig:
        try:
            self.spec().build()
        except InvalidTrust as exc:
            raise ValueError(str(exc)) from None
        return self


def _lifetime(value: object) -> object:
    # A DurationError is a ValueError: the message names the key.
    return parse_seconds(value) if isinstance(value, str) else value


# The longest lifetime a kind of token may be given: seconds, or a duration such as
# 90d or 12h; at most what an expiry date can hold.
MaxLifetime = Annotated[int, BeforeValidator(_lifetime), Field(ge=60, le=MAX_SECONDS)]


class CITokensConfig(_Section):
    max_ttl: MaxLifetime = 365 * 86400


class SSOConfig(_Section):
    """People signing in to the web page through an OpenID provider (`tokenserver.sso`)."""

    issuer: str
    client_id: str = Field(min_length=1, max_length=255)
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    # What the page's button says: "Sign in with <name>"; the issuer's host if not given.
    name: str = Field(default="", max_length=64)
    scopes: list[str] = ["openid", "profile", "email"]
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    # Conditions on the ID token's claims (globs or /regex/, as in access rules).
    claims: dict[str, str] = {}
    # Members of any of these groups at the provider are members of `admin` here.
    admin_groups: list[str] = []
    ca_file: Path | None = None
    # The callback URL registered at the provider; else this server's own, as the
    # browser reached it (`/ui/login/sso/callback`).
    redirect_uri: str | None = None
    # How long a sign-in through the provider is believed before the person must pass
    # through it again (their groups read afresh): a web session lasts no longer.
    recheck: int = 8 * 3600

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        parts = _server_url(value, ("https",))
        if parts.query or parts.fragment or len(value) > 1024:
            raise ValueError("must be an https:// URL without query or fragment")
        return value.rstrip("/")

    @field_validator("redirect_uri")
    @classmethod
    def _redirect_uri(cls, value: str | None) -> str | None:
        if value is not None:
            parts = _server_url(value, ("http", "https"))
            if parts.fragment or len(value) > 1024:
                raise ValueError("must be a URL without a fragment")
        return value

    @field_validator("scopes", mode="before")
    @classmethod
    def _scopes(cls, value: object) -> object:
        words = value.split() if isinstance(value, str) else value
        if isinstance(words, list):
            if "openid" not in words:
                raise ValueError("must include openid")
            if not all(isinstance(w, str) and w.isascii() and w.isprintable() for w in words):
                raise ValueError("must be printable ASCII words")
        return words

    @field_validator("username_claim", "groups_claim")
    @classmethod
    def _claim_name(cls, value: str) -> str:
        if not CLAIM_NAME.fullmatch(value):
            raise ValueError(f"{value[:70]!r} is not a claim name")
        return value

    @field_validator("claims")
    @classmethod
    def _claims(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pattern in value.items():
            if not CLAIM_NAME.fullmatch(name):
                raise ValueError(f"{name[:70]!r} is not a claim name")
            try:
                Pattern(pattern)
            except PatternError as exc:
                raise ValueError(f"{name}: {exc}") from None
        return value

    @field_validator("admin_groups")
    @classmethod
    def _admin_groups(cls, value: list[str]) -> list[str]:
        try:
            for group in value:
                check_name(group, "group name")
        except InvalidName as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("recheck", mode="before")
    @classmethod
    def _recheck(cls, value: object) -> object:
        if isinstance(value, str) and not value.isdigit():
            try:
                value = parse_seconds(value)
            except DurationError as exc:
                raise ValueError(str(exc)) from None
        if isinstance(value, int) and not isinstance(value, bool) and not 60 <= value <= 7 * 86400:
            raise ValueError("must be 1m to 7d")
        return value

    @model_validator(mode="after")
    def _secret(self) -> SSOConfig:
        if (self.client_secret is None) == (self.client_secret_file is None):
            raise ValueError("set client_secret or client_secret_file (one of them)")
        return self

    @property
    def display_name(self) -> str:
        return self.name or urlsplit(self.issuer).hostname or self.issuer

    def client_secret_value(self) -> str:
        if self.client_secret_file is not None:
            return _read_secret(self.client_secret_file, "sso.client_secret_file").strip()
        assert self.client_secret is not None  # one of the two, checked above
        return self.client_secret.get_secret_value()


class PersonalTokensConfig(_Section):
    max_ttl: MaxLifetime = 90 * 86400


class UIConfig(_Section):
    # The registry whose repositories the web page lists (read through its API).
    registry_url: str | None = None
    # Seconds a sign-in lasts.
    session_ttl: int = Field(default=8 * 3600, ge=60, le=7 * 86400)
    # The user name and password form; off, people sign in only through `sso`.
    password_login: bool = True

    @field_validator("registry_url")
    @classmethod
    def _registry_url(cls, value: str | None) -> str | None:
        if value is not None:
            _server_url(value, ("http", "https"))
        return value


class AuditConfig(_Section):
    retention_days: int = Field(default=90, ge=1)


class ThrottleConfig(_Section):
    account_failures: int = Field(default=10, ge=1)
    address_failures: int = Field(default=50, ge=1)
    window: int = Field(default=300, ge=1)  # seconds
    # An IPv6 client counts by its network of this many bits (an IPv4 one by its
    # address). Strict: YAML's `yes` would otherwise be a /1.
    ipv6_prefix: int = Field(default=DEFAULT_IPV6_PREFIX, ge=0, le=128, strict=True)


class DeviceConfig(_Section):
    """docker login through the browser (RFC 8628's device authorization grant)."""

    # Seconds a device's codes wait for the person's decision.
    code_ttl: int = Field(default=600, ge=60, le=86400)
    # Seconds a device waits between polls (each `slow_down` adds 5 for that device).
    interval: int = Field(default=5, ge=1, le=60)


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(_Section):
    server: ServerConfig = ServerConfig()
    token: TokenConfig = TokenConfig()
    database: DatabaseConfig = DatabaseConfig()
    users: UsersConfig = UsersConfig()
    log: LogConfig = LogConfig()
    authn: AuthnConfig = AuthnConfig()
    ldap: LDAPConfig = LDAPConfig()
    ci_tokens: CITokensConfig = CITokensConfig()
    ui: UIConfig = UIConfig()
    audit: AuditConfig = AuditConfig()
    throttle: ThrottleConfig = ThrottleConfig()
    acl: list[ACLEntry] | None = None
    acl_file: Path | None = None
    # OIDC issuers whose ID tokens log pipelines in (more can live in the database).
    federation: list[TrustConfig] = []
    # docker login through the browser: how long a device's codes wait, how often it polls.
    device: DeviceConfig = DeviceConfig()
    # The OpenID provider people sign in to the web page through.
    sso: SSOConfig | None = None
    # People's own tokens, made on their page or for them (docs/people.md).
    personal_tokens: PersonalTokensConfig = PersonalTokensConfig()

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        if self.acl is not None and self.acl_file is not None:
            raise ValueError("set acl or acl_file, not both")
        names = [trust.name for trust in self.federation]
        if len(set(names)) != len(names):
            raise ValueError("federation: two trusts have the same name")
        if self.authn.order is not None:
            if "htpasswd" in self.authn.order and self.users.htpasswd is None:
                raise ValueError("authn.order names htpasswd but users.htpasswd is not set")
            if "ldap" in self.authn.order and self.ldap.url is None:
                raise ValueError("authn.order names ldap but ldap.url is not set")
        if not self.ui.password_login and self.sso is None:
            raise ValueError("ui.password_login is false but sso is not set: no one could sign in")
        if self.sso is not None and "database" not in self.backend_order:
            # The people who sign in through the provider are accounts of the database.
            raise ValueError("sso needs the database backend (authn.order names it not)")
        return self

    def check_trust_files(self) -> None:
        """Read the trusts' (and the provider's) CA files now: a bad one stops the start-up,
        naming it, rather than failing every login of its trust; so does an unreadable
        `sso.client_secret_file`."""
        for index, trust in enumerate(self.federation):
            if trust.ca_file is not None:
                try:
                    check_ca_file(trust.ca_file)
                except InvalidTrust as exc:
                    raise ConfigError(f"federation.{index} ({trust.name}): {exc}") from None
        if self.sso is not None:
            if self.sso.ca_file is not None:
                try:
                    check_ca_file(self.sso.ca_file)
                except InvalidTrust as exc:
                    raise ConfigError(f"sso: {exc}") from None
            if not self.sso.client_secret_value():
                raise ConfigError("sso: the client secret is empty")

    @property
    def backend_order(self) -> tuple[str, ...]:
        if self.authn.order is not None:
            return tuple(self.authn.order)
        configured = {
            "htpasswd": self.users.htpasswd is not None,
            "database": True,
            "ldap": self.ldap.url is not None,
        }
        return tuple(name for name, on in configured.items() if on)


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
            "acl_file": fix(config.acl_file),
            "federation": [
                trust.model_copy(
                    update={"jwks_file": fix(trust.jwks_file), "ca_file": fix(trust.ca_file)}
                )
                for trust in config.federation
            ],
            "sso": None
            if config.sso is None
            else config.sso.model_copy(
                update={
                    "ca_file": fix(config.sso.ca_file),
                    "client_secret_file": fix(config.sso.client_secret_file),
                }
            ),
            "ldap": config.ldap.model_copy(
                update={
                    "ca_file": fix(config.ldap.ca_file),
                    "bind_password_file": fix(config.ldap.bind_password_file),
                }
            ),
            "server": config.server.model_copy(
                update={
                    "tls": TLSFiles(
                        certificate=fix(config.server.tls.certificate),
                        key=fix(config.server.tls.key),
                    )
                }
            ),
        }
    )

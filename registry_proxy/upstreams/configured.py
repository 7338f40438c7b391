"""The upstreams a configuration names, each with its client (made in the app's lifespan)."""

from __future__ import annotations

from authcore.settings import ConfigError
from registry_proxy.config import Config
from registry_proxy.upstreams.client import UpstreamClient
from registry_proxy.upstreams.exec_credentials import ExecCredentials
from registry_proxy.upstreams.routing import Upstream, Upstreams, hosts_of
from registry_proxy.upstreams.settings import ExecConfig, UpstreamConfig

__all__ = ["build_upstreams"]

# What a password file may hold: a password, not a file that happens to be there.
MAX_PASSWORD_FILE = 4096


def _password(upstream: UpstreamConfig) -> str | None:
    if upstream.password is not None:
        return upstream.password.get_secret_value()
    path = upstream.password_file
    if path is None:
        return None
    where = f"upstreams[{upstream.prefix}].password_file"
    try:
        with path.open("rb") as file:
            data = file.read(MAX_PASSWORD_FILE + 1)
        if len(data) > MAX_PASSWORD_FILE:
            raise ConfigError(f"{where}: {path} is larger than a password")
        return data.decode().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: {path} cannot be read ({type(exc).__name__})") from None


def _helper(section: ExecConfig | None, url: str) -> ExecCredentials | None:
    if section is None:
        return None
    lifetime = None if section.lifetime is None else section.lifetime.total_seconds()
    return ExecCredentials(section.command, url, lifetime=lifetime)


def build_upstreams(config: Config) -> Upstreams:
    """ConfigError for a password file that cannot be read."""
    proxy = config.proxy
    if proxy is not None:
        password = proxy.password.get_secret_value() if proxy.password else None
        client = UpstreamClient(
            proxy.remoteurl,
            username=proxy.username,
            password=password,
            credentials=_helper(proxy.exec, proxy.remoteurl),
        )
        upstream = Upstream("", proxy.remoteurl, client, proxy.ttl, hosts=hosts_of(proxy.remoteurl))
        return Upstreams([upstream], everything=True)
    built = []
    for section in config.upstreams:
        client = UpstreamClient(
            section.url,
            username=section.username,
            password=_password(section),
            credentials=_helper(section.exec, section.url),
            timeout=section.timeout,
        )
        built.append(
            Upstream(
                section.prefix,
                section.url,
                client,
                section.ttl,
                cache=section.cache,
                repositories=tuple(section.repositories),
                hosts=hosts_of(section.url),
            )
        )
    return Upstreams(built)

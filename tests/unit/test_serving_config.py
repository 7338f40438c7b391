"""The serving limits of both services: defaults, YAML, environment, ranges."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from authcore.http_limits import Limits, ServingSettings
from registry_proxy.config import load_config as load_registry
from tokenserver.config import ConfigError
from tokenserver.config import load_config as load_token_server

AUTH = {"token": {"realm": "http://127.0.0.1:1/token", "service": "r", "issuer": "i", "jwks": "j"}}


def _token_server(tmp_path: Path, values: dict[str, Any], environ: dict[str, str]) -> Any:
    path = tmp_path / "tokenserver.yaml"
    path.write_text(yaml.safe_dump({"server": values}))
    return load_token_server(path, environ=environ).server


def _registry(tmp_path: Path, values: dict[str, Any], environ: dict[str, str]) -> Any:
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump({"http": values, "auth": AUTH}))
    return load_registry(path, environ=environ).http


# (loader, environment prefix, section) for each service
SERVICES: dict[str, tuple[Callable[..., Any], str, str]] = {
    "tokenserver": (_token_server, "TOKENSERVER_SERVER_", "server"),
    "registry": (_registry, "REGISTRY_PROXY_HTTP_", "http"),
}


@pytest.fixture(params=sorted(SERVICES))
def service(request: pytest.FixtureRequest) -> tuple[Callable[..., Any], str, str]:
    return SERVICES[request.param]


def test_defaults(service: tuple[Callable[..., Any], str, str], tmp_path: Path) -> None:
    load, _, _ = service
    section = load(tmp_path, {}, {})
    assert section.limits == Limits(65536, 10.0, 60.0)
    assert section.trusted_proxies == []


def test_yaml_and_environment(service: tuple[Callable[..., Any], str, str], tmp_path: Path) -> None:
    load, prefix, _ = service
    section = load(
        tmp_path,
        {"max_header_bytes": 8192, "header_timeout": 2.5, "trusted_proxies": ["::1"]},
        {f"{prefix}BODY_TIMEOUT": "30", f"{prefix}TRUSTED_PROXIES": "[127.0.0.1, 10.0.0.0/8]"},
    )
    assert section.limits == Limits(8192, 2.5, 30.0)
    assert section.trusted_proxies == ["127.0.0.1", "10.0.0.0/8"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_header_bytes", 1023),
        ("max_header_bytes", 1024 * 1024 + 1),
        ("max_header_bytes", "lots"),
        ("header_timeout", 0),
        ("header_timeout", -1),
        ("header_timeout", 301),
        ("body_timeout", 0),
        ("body_timeout", 3601),
        ("trusted_proxies", ["proxy.example"]),
        ("trusted_proxies", ["10.0.0.0/33"]),
        ("trusted_proxies", "127.0.0.1"),
    ],
)
def test_out_of_range_values_name_the_key(
    service: tuple[Callable[..., Any], str, str], tmp_path: Path, key: str, value: object
) -> None:
    load, _, section = service
    with pytest.raises(ConfigError, match=rf"{section}\.{key}"):
        load(tmp_path, {key: value}, {})


def test_bounds_are_inclusive_where_they_say_so(tmp_path: Path) -> None:
    for load, _, _ in SERVICES.values():
        low = load(tmp_path, {"max_header_bytes": 1024, "header_timeout": 0.1}, {})
        high = load(tmp_path, {"max_header_bytes": 1024 * 1024, "body_timeout": 3600}, {})
        assert (low.max_header_bytes, high.max_header_bytes) == (1024, 1024 * 1024)
        assert (low.header_timeout, high.body_timeout) == (0.1, 3600)


def test_any_proxy_only_when_asked() -> None:
    assert ServingSettings(trusted_proxies=["*"]).trusted_proxies == ["*"]
    assert ServingSettings().trusted_proxies == []

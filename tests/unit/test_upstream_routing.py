"""Which upstream a repository name belongs to, its name there and here; and the config."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from registry_proxy.config import Config
from registry_proxy.upstreams.client import UpstreamClient
from registry_proxy.upstreams.routing import Upstream, Upstreams, hosts_of

AUTH = {
    "token": {"realm": "http://127.0.0.1:5001/token", "service": "s", "issuer": "i", "jwks": "k"}
}


def _upstream(prefix: str, url: str, *patterns: str) -> Upstream:
    return Upstream(
        prefix,
        url,
        UpstreamClient(url),
        dt.timedelta(hours=1),
        repositories=patterns,
        hosts=hosts_of(url),
    )


@pytest.fixture
def upstreams() -> Upstreams:
    return Upstreams(
        [
            _upstream("hub", "https://registry-1.docker.io"),
            _upstream("ghcr", "https://ghcr.io"),
            _upstream("mirrors/quay", "https://quay.io:443", "team/*"),
            _upstream("mirrors", "http://127.0.0.1:5000"),
        ]
    )


@pytest.mark.parametrize(
    ("name", "ns", "expected"),
    [
        ("hub/alpine", None, ("hub", "hub/alpine", "library/alpine")),
        ("hub/bitnami/redis", None, ("hub", "hub/bitnami/redis", "bitnami/redis")),
        ("ghcr/owner/app", None, ("ghcr", "ghcr/owner/app", "owner/app")),
        ("ghcr/app", None, ("ghcr", "ghcr/app", "app")),  # no library/ rule off Docker Hub
        ("mirrors/quay/team/x", None, ("mirrors/quay", "mirrors/quay/team/x", "team/x")),
        ("mirrors/other/x", None, ("mirrors", "mirrors/other/x", "other/x")),
        ("hubble/x", None, None),  # a prefix is whole components
        ("hub", None, None),
        ("local/app", None, None),
        ("library/alpine", "docker.io", ("hub", "hub/library/alpine", "library/alpine")),
        ("alpine", "docker.io", ("hub", "hub/library/alpine", "library/alpine")),
        ("alpine", "registry-1.docker.io", ("hub", "hub/library/alpine", "library/alpine")),
        ("owner/app", "GHCR.IO", ("ghcr", "ghcr/owner/app", "owner/app")),
        ("team/x", "quay.io:443", ("mirrors/quay", "mirrors/quay/team/x", "team/x")),
        ("app", "127.0.0.1:5000", ("mirrors", "mirrors/app", "app")),
        ("owner/app", "evil.example", None),
        ("owner/app", "x" * 10_000, None),
        ("a/" * 130 + "b", "docker.io", None),  # too long here once prefixed
    ],
)
def test_names_are_routed_by_prefix_and_ns(
    upstreams: Upstreams, name: str, ns: str | None, expected: tuple[str, str, str] | None
) -> None:
    routed = upstreams.route(name, ns)
    got = None if routed is None else (routed.upstream.prefix, routed.local, routed.remote)
    assert got == expected


def test_repositories_limit_what_may_be_pulled(upstreams: Upstreams) -> None:
    quay = upstreams.route("mirrors/quay/team/x")
    other = upstreams.route("mirrors/quay/other/x")
    assert quay is not None and quay.upstream.allows(quay.remote)
    assert other is not None and not other.upstream.allows(other.remote)


def test_names_under_a_prefix_are_the_upstream_s(upstreams: Upstreams) -> None:
    assert upstreams.owns("hub/alpine") and upstreams.owns("hub")
    assert upstreams.owns("mirrors/anything")
    assert not upstreams.owns("hubble/x") and not upstreams.owns("local/app")
    everything = Upstreams([_upstream("", "http://127.0.0.1:5000")], everything=True)
    assert everything.owns("any/name")
    routed = everything.route("any/name")
    assert routed is not None and (routed.local, routed.remote) == ("any/name", "any/name")


def _config(**sections: Any) -> Config:
    return Config.model_validate({"auth": AUTH, **sections})


def test_the_go_registry_proxy_section_is_taken_as_written() -> None:
    config = _config(
        proxy={
            "remoteurl": "https://registry-1.docker.io",
            "username": "u",
            "password": "p",
            "ttl": "24h",
        }
    )
    assert config.proxy is not None and config.proxy.ttl == dt.timedelta(hours=24)
    assert "upstream-secret-9" not in repr(config.proxy)
    assert _config(proxy={"remoteurl": "http://127.0.0.1:5000", "ttl": 0}).proxy.ttl is None  # type: ignore[union-attr]


def test_exec_takes_a_command_and_a_lifetime_as_the_go_registry_does() -> None:
    url = "http://127.0.0.1:5000"
    once = _config(proxy={"remoteurl": url, "exec": {"command": "docker-credential-ecr-login"}})
    assert once.proxy is not None and once.proxy.exec is not None
    assert once.proxy.exec.lifetime is None  # absent: the helper runs once
    every = _config(proxy={"remoteurl": url, "exec": {"command": "h --x 'a b'", "lifetime": 0}})
    assert every.proxy.exec.lifetime == dt.timedelta(0)  # type: ignore[union-attr]
    kept = _config(
        upstreams=[{"prefix": "a", "url": url, "exec": {"command": "h", "lifetime": "12h"}}]
    )
    assert kept.upstreams[0].exec is not None
    assert kept.upstreams[0].exec.lifetime == dt.timedelta(hours=12)


@pytest.mark.parametrize(
    ("sections", "keys"),
    [
        ({"proxy": {"username": "u", "password": "p"}}, "username, password"),
        ({"proxy": {"username": "u"}}, "username"),
        ({"upstreams": [{"password_file": "/dev/null"}]}, "password_file"),
        ({"upstreams": [{"username": "u", "password": "p"}]}, "username, password"),
    ],
)
def test_exec_excludes_a_username_and_password_naming_them(
    sections: dict[str, Any], keys: str
) -> None:
    exec_ = {"command": "docker-credential-x"}
    if "proxy" in sections:
        sections = {
            "proxy": {"remoteurl": "http://127.0.0.1:5000", "exec": exec_, **sections["proxy"]}
        }
    else:
        given = {"prefix": "a", "url": "http://127.0.0.1:5000", "exec": exec_}
        sections = {"upstreams": [given | sections["upstreams"][0]]}
    with pytest.raises(ValueError, match=f"exec excludes {keys}"):
        _config(**sections)


@pytest.mark.parametrize(
    "sections",
    [
        {"proxy": {"remoteurl": "ftp://127.0.0.1/"}},
        {"proxy": {"remoteurl": "http://u:p@127.0.0.1:5000"}},
        {"proxy": {"remoteurl": "http://127.0.0.1:5000", "username": "u"}},
        {"proxy": {"remoteurl": "http://127.0.0.1:5000", "ttl": "-1h"}},
        {"proxy": {"remoteurl": "http://127.0.0.1:5000", "ttl": "soon"}},
        {"proxy": {"remoteurl": "http://127.0.0.1:5000", "exec": {}}},
        {"proxy": {"remoteurl": "http://127.0.0.1:5000", "exec": {"command": ""}}},
        {"proxy": {"remoteurl": "http://127.0.0.1:5000", "exec": {"command": "  "}}},
        {"proxy": {"remoteurl": "http://127.0.0.1:5000", "exec": {"command": "'open"}}},
        {"proxy": {"remoteurl": "http://127.0.0.1:5000", "exec": {"command": "x" * 4097}}},
        {"proxy": {"remoteurl": "http://127.0.0.1:5000", "exec": {"command": "x", "shell": 1}}},
        {
            "proxy": {
                "remoteurl": "http://127.0.0.1:5000",
                "exec": {"command": "x", "lifetime": "-1s"},
            }
        },
        {
            "proxy": {
                "remoteurl": "http://127.0.0.1:5000",
                "exec": {"command": "x", "lifetime": "soon"},
            }
        },
        {
            "proxy": {
                "remoteurl": "http://127.0.0.1:5000",
                "exec": {"command": "x", "lifetime": True},
            }
        },
        {"proxy": {"remoteurl": "http://127.0.0.1:5000", "exec": {"command": "x", "lifetime": 60}}},
        {"upstreams": [{"prefix": "Hub", "url": "https://ghcr.io"}]},
        {"upstreams": [{"prefix": "hub/", "url": "https://ghcr.io"}]},
        {"upstreams": [{"prefix": "", "url": "https://ghcr.io"}]},
        {"upstreams": [{"prefix": "a", "url": "https://ghcr.io?x=1"}]},
        {"upstreams": [{"prefix": "a", "url": "https://ghcr.io", "password": "p"}]},
        {"upstreams": [{"prefix": "a", "url": "https://ghcr.io", "username": "u"}]},
        {
            "upstreams": [
                {
                    "prefix": "a",
                    "url": "https://ghcr.io",
                    "username": "u",
                    "password": "p",
                    "password_file": "/dev/null",
                }
            ]
        },
        {"upstreams": [{"prefix": "a", "url": "https://ghcr.io", "cache": "yes"}]},
        {"upstreams": [{"prefix": "a", "url": "https://ghcr.io", "timeout": 0}]},
        {
            "upstreams": [
                {"prefix": "a", "url": "https://ghcr.io"},
                {"prefix": "a", "url": "https://quay.io"},
            ]
        },
        {
            "upstreams": [{"prefix": "a", "url": "https://ghcr.io"}],
            "proxy": {"remoteurl": "https://quay.io"},
        },
        {"upstreams": [{"prefix": "a", "url": "https://ghcr.io", "colour": "red"}]},
        {"upstreams": [{"prefix": "a", "url": "https://" + "x" * 2000}]},
    ],
)
def test_bad_upstream_settings_stop_the_start(sections: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _config(**sections)

"""Settings: defaults, YAML, environment overrides, validation, relative paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tokenserver import cli
from tokenserver.config import Config, ConfigError, load_config


def _write(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults() -> None:
    config = load_config(None, environ={})
    assert config == Config()
    assert config.server.addr == "127.0.0.1:5001"
    assert (config.server.host, config.server.port) == ("127.0.0.1", 5001)
    assert config.server.max_body_bytes == 64 * 1024
    assert config.token.issuer == "tokenserver"
    assert config.token.services == ("registry",)
    assert config.token.expiration == 300
    assert config.token.algorithm == "ES256"
    assert config.token.keys_dir == Path("keys")
    assert config.token.signing_key is None
    assert config.token.x5c is True
    assert config.users.credential_cache_ttl == 60
    assert config.database.url == "sqlite:///tokenserver.db"
    assert config.database.pool_size == 20


def test_yaml_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "c.yaml",
        {
            "server": {"addr": "0.0.0.0:8443", "max_body_bytes": 4096},
            "token": {
                "issuer": "me",
                "service": ["a", "b"],
                "expiration": 600,
                "algorithm": "RS256",
                "keys_dir": "/abs/keys",
            },
            "log": {"level": "debug"},
        },
    )
    config = load_config(path, environ={})
    assert config.server.port == 8443
    assert config.server.max_body_bytes == 4096
    assert config.token.issuer == "me"
    assert config.token.services == ("a", "b")
    assert config.token.expiration == 600
    assert config.token.algorithm == "RS256"
    assert config.token.keys_dir == Path("/abs/keys")
    assert config.log.level == "debug"


def test_empty_yaml_file_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("")
    config = load_config(path, environ={})
    assert config.server == Config().server
    assert config.token.expiration == 300
    assert config.token.keys_dir == tmp_path / "keys"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.yaml", {"token": {"service": "fromfile", "expiration": 120}})
    config = load_config(
        path,
        environ={
            "TOKENSERVER_TOKEN_KEYS_DIR": "/etc/tokenserver/keys",
            "TOKENSERVER_TOKEN_SERVICE": "[a, b]",
            "TOKENSERVER_SERVER_ADDR": "[::1]:6000",
            "TOKENSERVER_USERS_CREDENTIAL_CACHE_TTL": "0",
            "TOKENSERVER_TOKEN_X5C": "false",
            "TOKENSERVER_CONFIG": "/ignored.yaml",
            "UNRELATED": "x",
        },
    )
    assert config.token.keys_dir == Path("/etc/tokenserver/keys")
    assert config.token.services == ("a", "b")
    assert config.token.expiration == 120  # untouched by env
    assert config.server.addr == "[::1]:6000"
    assert (config.server.host, config.server.port) == ("::1", 6000)
    assert config.users.credential_cache_ttl == 0
    assert config.token.x5c is False


@pytest.mark.parametrize("value", ["123", "*", "yes", "a: b", "[x]"])
def test_environment_string_keys_are_taken_verbatim(value: str) -> None:
    # Parsed as YAML these would be an int, an alias error, a bool, a map, a list.
    config = load_config(None, environ={"TOKENSERVER_TOKEN_ISSUER": value})
    assert config.token.issuer == value


def test_environment_bad_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"token\.expiration"):
        load_config(None, environ={"TOKENSERVER_TOKEN_EXPIRATION": "soon"})
    with pytest.raises(ConfigError, match="TOKENSERVER_TOKEN_SERVICE"):
        load_config(None, environ={"TOKENSERVER_TOKEN_SERVICE": "[a, b"})


def test_environment_without_a_file() -> None:
    config = load_config(None, environ={"TOKENSERVER_TOKEN_EXPIRATION": "900"})
    assert config.token.expiration == 900


def test_unknown_yaml_key_names_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.yaml", {"token": {"expiraton": 300}})
    with pytest.raises(ConfigError, match=r"token\.expiraton: unknown key"):
        load_config(path, environ={})


def test_unknown_top_level_section(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.yaml", {"tokens": {}})
    with pytest.raises(ConfigError, match="tokens: unknown key"):
        load_config(path, environ={})


@pytest.mark.parametrize("var", ["TOKENSERVER_TOKEN_EXPIRATON", "TOKENSERVER_NOPE", "TOKENSERVER_"])
def test_unknown_environment_key_names_the_variable(var: str) -> None:
    with pytest.raises(ConfigError, match=var):
        load_config(None, environ={var: "1"})


@pytest.mark.parametrize("value", [0, 59, -1])
def test_expiration_under_60_refused(tmp_path: Path, value: int) -> None:
    path = _write(tmp_path / "c.yaml", {"token": {"expiration": value}})
    with pytest.raises(ConfigError, match=r"token\.expiration"):
        load_config(path, environ={})


def test_expiration_60_accepted() -> None:
    assert load_config(None, environ={"TOKENSERVER_TOKEN_EXPIRATION": "60"}).token.expiration == 60


@pytest.mark.parametrize("addr", ["localhost", ":5001", "host:", "host:0", "host:65536", "h:x"])
def test_bad_addr_refused(addr: str) -> None:
    with pytest.raises(ConfigError, match=r"server\.addr"):
        load_config(None, environ={"TOKENSERVER_SERVER_ADDR": addr})


@pytest.mark.parametrize(
    ("section", "values", "key"),
    [
        ("token", {"service": []}, "token.service"),
        ("token", {"service": ""}, "token.service"),
        ("token", {"algorithm": "EdDSA"}, "token.algorithm"),
        ("token", {"algorithm": "PS256"}, "token.algorithm"),
        ("users", {"credential_cache_ttl": -1}, "users.credential_cache_ttl"),
        ("server", {"max_body_bytes": 10}, "server.max_body_bytes"),
        ("log", {"level": "loud"}, "log.level"),
        ("database", {"pool_size": 0}, "database.pool_size"),
        ("throttle", {"ipv6_prefix": -1}, "throttle.ipv6_prefix"),
        ("throttle", {"ipv6_prefix": 129}, "throttle.ipv6_prefix"),
        ("throttle", {"ipv6_prefix": "/64"}, "throttle.ipv6_prefix"),
        ("throttle", {"ipv6_prefix": 64.5}, "throttle.ipv6_prefix"),
        ("throttle", {"ipv6_prefix": True}, "throttle.ipv6_prefix"),  # YAML's `yes`, not a /1
        ("throttle", {"ipv6_prefix": None}, "throttle.ipv6_prefix"),
        ("device", {"code_ttl": 59}, "device.code_ttl"),
        ("device", {"code_ttl": 86401}, "device.code_ttl"),
        ("device", {"interval": 0}, "device.interval"),
        ("device", {"interval": 61}, "device.interval"),
        ("device", {"polls": 1}, "device.polls"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, section: str, values: dict, key: str) -> None:
    path = _write(tmp_path / "c.yaml", {section: values})
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(path, environ={})


def test_not_a_mapping_and_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path, environ={})
    path.write_text("token: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path, environ={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml", environ={})


def test_relative_paths_resolve_against_the_config_directory(tmp_path: Path) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    path = _write(
        conf_dir / "c.yaml",
        {
            "token": {"keys_dir": "keys"},
            "users": {"htpasswd": "users.htpasswd"},
            "database": {"url": "sqlite:///data/ts.db"},
            "server": {"tls": {"certificate": "tls/cert.pem", "key": "/abs/key.pem"}},
        },
    )
    config = load_config(path, environ={})
    assert config.token.keys_dir == conf_dir / "keys"
    assert config.users.htpasswd == conf_dir / "users.htpasswd"
    assert config.database.url == f"sqlite:///{conf_dir / 'data/ts.db'}"
    assert config.server.tls.certificate == conf_dir / "tls/cert.pem"
    assert config.server.tls.key == Path("/abs/key.pem")


def test_absolute_and_memory_sqlite_urls_are_kept(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.yaml", {"database": {"url": "sqlite:////var/lib/ts.db"}})
    assert load_config(path, environ={}).database.url == "sqlite:////var/lib/ts.db"
    _write(path, {"database": {"url": "sqlite:///:memory:"}})
    assert load_config(path, environ={}).database.url == "sqlite:///:memory:"
    _write(path, {"database": {"url": "postgresql://u@h/db"}})
    assert load_config(path, environ={}).database.url == "postgresql://u@h/db"


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(ValueError):
        config.token.expiration = 10  # type: ignore[misc]


def test_ldap_and_backend_order(tmp_path: Path) -> None:
    config = load_config(None, environ={})
    assert config.ldap.url is None
    assert config.backend_order == ("database",)
    ldap = {"url": "ldaps://127.0.0.1:636", "base_dn": "dc=example,dc=test"}
    path = _write(
        tmp_path / "c.yaml",
        {
            "users": {"htpasswd": "users.htpasswd"},
            "ldap": {**ldap, "ca_file": "ca.pem", "bind_password_file": "bind.pw"},
        },
    )
    config = load_config(path, environ={})
    assert config.backend_order == ("htpasswd", "database", "ldap")
    assert config.ldap.ca_file == tmp_path / "ca.pem"
    assert config.ldap.group_attribute == "memberOf"  # the default way to find groups
    (tmp_path / "bind.pw").write_text("s3cret\n")
    assert config.ldap.bind_password_value() == "s3cret"

    env = {
        "TOKENSERVER_AUTHN_ORDER": "[ldap, database]",
        "TOKENSERVER_LDAP_URL": "ldap://127.0.0.1:389",
        "TOKENSERVER_LDAP_BASE_DN": "dc=example,dc=test",
        "TOKENSERVER_LDAP_BIND_PASSWORD": "12345",
    }
    config = load_config(None, environ=env)
    assert config.backend_order == ("ldap", "database")
    assert config.ldap.bind_password_value() == "12345"
    assert "12345" not in repr(config)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"authn": {"order": ["ldap"]}}, "ldap.url is not set"),
        ({"authn": {"order": ["htpasswd"]}}, "users.htpasswd is not set"),
        ({"authn": {"order": ["database", "database"]}}, "twice"),
        ({"authn": {"order": []}}, "at least one"),
        ({"authn": {"order": ["kerberos"]}}, "authn.order"),
        ({"ldap": {"url": "http://127.0.0.1", "base_dn": "x"}}, "ldap.url"),
        ({"ldap": {"url": "ldap://127.0.0.1:99999", "base_dn": "x"}}, "ldap.url"),
        ({"ldap": {"url": "ldap://127.0.0.1"}}, "base_dn is required"),
        ({"ldap": {"url": "ldaps://h", "base_dn": "x", "start_tls": True}}, "start_tls"),
        ({"ldap": {"user_filter": "uid={username}"}}, "ldap.user_filter"),
        ({"ldap": {"user_filter": "(uid=alice)"}}, "ldap.user_filter"),
        ({"ldap": {"group_attribute": "memberOf", "group_filter": "(member={dn})"}}, "not both"),
        ({"ldap": {"bind_password": "a", "bind_password_file": "f"}}, "not both"),
        ({"ldap": {"timeout": 0}}, "ldap.timeout"),
    ],
)
def test_bad_ldap_and_authn_settings(tmp_path: Path, data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path / "c.yaml", data), environ={})


def test_device_login_defaults_and_environment() -> None:
    config = load_config(None, environ={})
    assert (config.device.code_ttl, config.device.interval) == (600, 5)
    environ = {"TOKENSERVER_DEVICE_CODE_TTL": "900", "TOKENSERVER_DEVICE_INTERVAL": "10"}
    config = load_config(None, environ=environ)
    assert (config.device.code_ttl, config.device.interval) == (900, 10)


def test_ipv6_prefix_default_range_and_environment() -> None:
    assert load_config(None, environ={}).throttle.ipv6_prefix == 64
    for value in ("0", "48", "128"):
        environ = {"TOKENSERVER_THROTTLE_IPV6_PREFIX": value}
        assert load_config(None, environ=environ).throttle.ipv6_prefix == int(value)
    with pytest.raises(ConfigError, match=r"throttle\.ipv6_prefix"):
        load_config(None, environ={"TOKENSERVER_THROTTLE_IPV6_PREFIX": "200"})


def test_a_bad_ipv6_prefix_stops_serve_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path / "c.yaml", {"throttle": {"ipv6_prefix": 129}})
    assert cli.main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "throttle.ipv6_prefix" in err and "Traceback" not in err


TOKEN_KINDS = [("personal_tokens", 90 * 86400), ("ci_tokens", 365 * 86400)]


@pytest.mark.parametrize(("section", "default"), TOKEN_KINDS)
@pytest.mark.parametrize(
    ("value", "seconds"), [("90d", 90 * 86400), ("12h", 43200), ("3600", 3600), ("60", 60)]
)
def test_a_max_ttl_is_a_duration(section: str, default: int, value: str, seconds: int) -> None:
    config = load_config(environ={f"TOKENSERVER_{section.upper()}_MAX_TTL": value})
    assert getattr(config, section).max_ttl == seconds
    assert getattr(Config(), section).max_ttl == default


@pytest.mark.parametrize(("section", "default"), TOKEN_KINDS)
@pytest.mark.parametrize("value", ["soon", "59", "0", "-1d", "1.5s", "9" * 400, "36500000d"])
def test_a_bad_max_ttl_names_the_key(section: str, default: int, value: str) -> None:
    # Past what an expiry date holds too: a token made with it would end in a 500.
    with pytest.raises(ConfigError, match=rf"{section}\.max_ttl"):
        load_config(environ={f"TOKENSERVER_{section.upper()}_MAX_TTL": value})

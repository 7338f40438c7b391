"""The `tokenserver` command line: users, refresh tokens, keys."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import text

from tokenserver import cli
from tokenserver.config import Config
from tokenserver.keys import load_keys
from tokenserver.passwords import verify_password
from tokenserver.store.db import Database
from tokenserver.store.refresh_tokens import RefreshTokenStore
from tokenserver.store.ui_sessions import UISessionStore
from tokenserver.store.users import UserStore, account_key

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(
    config: Config,
    config_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Run:
    """Run the CLI against the test config; return (exit code, stdout, stderr)."""

    def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = cli.main([*argv, "--config", str(config_path)])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_user_add_list_passwd_disable_del(run: Run, users: UserStore) -> None:
    code, out, _ = run(
        "user", "add", "alice", "--password-stdin", "--group", "dev", "--group", "admin",
        stdin="first-pw\n",
    )  # fmt: skip
    assert code == 0 and "alice added" in out
    info = users.get("alice")
    assert info is not None
    assert info.groups == ("admin", "dev")
    assert verify_password("first-pw", info.password_hash)
    assert "first-pw" not in info.password_hash

    assert run("user", "add", "bob", "--password-stdin", stdin="bob-pw\r\n")[0] == 0
    bob = users.get("bob")
    assert bob is not None and verify_password("bob-pw", bob.password_hash)

    code, out, _ = run("user", "list", "--json")
    assert code == 0
    assert json.loads(out) == [
        {"name": "alice", "groups": ["admin", "dev"], "disabled": False, "source": "local"},
        {"name": "bob", "groups": [], "disabled": False, "source": "local"},
    ]

    code, out, _ = run("user", "passwd", "alice", "--password-stdin", stdin="second-pw\n")
    assert code == 0 and "changed" in out
    info = users.get("alice")
    assert info is not None
    assert verify_password("second-pw", info.password_hash)
    assert not verify_password("first-pw", info.password_hash)

    assert run("user", "disable", "alice")[0] == 0
    assert users.get("alice").disabled  # type: ignore[union-attr]
    code, out, _ = run("user", "list")
    assert "alice\tadmin,dev (disabled)" in out
    assert run("user", "enable", "alice")[0] == 0
    assert not users.get("alice").disabled  # type: ignore[union-attr]

    assert run("user", "groups", "bob", "--group", "ops")[0] == 0
    assert users.get("bob").groups == ("ops",)  # type: ignore[union-attr]

    code, out, _ = run("user", "del", "alice")
    assert code == 0 and "deleted" in out
    assert users.get("alice") is None
    assert [u["name"] for u in json.loads(run("user", "list", "--json")[1])] == ["bob"]


def test_user_errors_exit_2(run: Run) -> None:
    assert run("user", "add", "alice", "--password-stdin", stdin="pw-1\n")[0] == 0
    code, _, err = run("user", "add", "alice", "--password-stdin", stdin="pw-2\n")
    assert code == 2 and "already exists" in err
    for argv in (
        ("user", "del", "ghost"),
        ("user", "disable", "ghost"),
        ("user", "groups", "ghost"),
    ):
        code, _, err = run(*argv)
        assert code == 2 and "no user ghost" in err
    code, _, err = run("user", "passwd", "ghost", "--password-stdin", stdin="pw-3\n")
    assert code == 2 and "no user ghost" in err
    code, _, err = run("user", "add", "carol")  # no --password-stdin
    assert code == 2 and "--password-stdin" in err


@pytest.mark.parametrize(
    ("password", "reason"),
    [("", "empty"), ("p" * 73, "longer than 72"), ("é" * 37, "longer than 72"), ("a\x00b", "NUL")],
)
def test_bad_password_refused(run: Run, users: UserStore, password: str, reason: str) -> None:
    code, out, err = run("user", "add", "alice", "--password-stdin", stdin=password + "\n")
    assert code == 2
    assert reason in err
    if password:
        assert password not in err and password not in out
    assert users.get("alice") is None


def test_bad_password_on_passwd_keeps_the_old_one(run: Run, users: UserStore) -> None:
    run("user", "add", "alice", "--password-stdin", stdin="good-pw\n")
    code, _, err = run("user", "passwd", "alice", "--password-stdin", stdin="q" * 80 + "\n")
    assert code == 2 and "q" * 80 not in err
    assert verify_password("good-pw", users.get("alice").password_hash)  # type: ignore[union-attr]


def test_refresh_token_revoke_and_list(run: Run, database: Database) -> None:
    store = RefreshTokenStore(database)
    now = dt.datetime.now(dt.UTC)
    for subject in ("alice", "alice", "bob"):
        store.issue(subject, "registry", "docker", dt.timedelta(days=1), now, backend="database")
    code, out, _ = run("refresh-token", "revoke", "--user", "alice")
    assert code == 0 and "revoked 2 refresh token(s) of alice" in out
    assert [t.revoked_at is not None for t in store.list()] == [True, True, False]
    assert "revoked 0" in run("refresh-token", "revoke", "--user", "alice")[1]
    code, out, _ = run("refresh-token", "list", "--user", "bob")
    assert code == 0 and out.count("\n") == 1 and "\tbob\tregistry\tdocker\t" in out
    assert out.rstrip().endswith("live")


def test_user_del_revokes_refresh_tokens(run: Run, database: Database) -> None:
    run("user", "add", "alice", "--password-stdin", stdin="pw-x\n")
    store = RefreshTokenStore(database)
    value = store.issue(
        "alice",
        "registry",
        "docker",
        dt.timedelta(days=1),
        dt.datetime.now(dt.UTC),
        backend="database",
    )
    assert run("user", "del", "alice")[0] == 0
    assert store.use(value, dt.datetime.now(dt.UTC)) is None


def test_keys_generate_prints_the_certificate_path(run: Run, config: Config) -> None:
    before = set(config.token.keys_dir.glob("*.crt"))
    code, out, _ = run("keys", "generate")
    assert code == 0
    cert = Path(out.strip())
    assert cert.is_file() and cert.suffix == ".crt"
    assert cert.parent == config.token.keys_dir
    assert set(config.token.keys_dir.glob("*.crt")) == before | {cert}
    assert load_keys(config.token.keys_dir).signing.public.path == cert  # newest signs

    code, out, _ = run("keys", "generate", "--algorithm", "RS256")
    assert code == 0 and out.strip().endswith("-rs256.crt")
    code, _, err = run("keys", "generate", "--algorithm", "EdDSA")
    assert code == 2 and "unsupported algorithm" in err


def test_keys_jwks_names_each_key_by_the_kid_tokens_carry(
    run: Run, config: Config, tmp_path: Path
) -> None:
    keys_dir = config.token.keys_dir
    assert run("keys", "generate", "--algorithm", "RS256")[0] == 0
    keys = load_keys(keys_dir)
    code, out, _ = run("keys", "jwks")
    assert code == 0
    printed = json.loads(out)
    assert printed == keys.jwks()
    assert [k["kid"] for k in printed["keys"]] == [k.kid for k in keys.public]
    assert keys.signing.kid in [k["kid"] for k in printed["keys"]]

    target = tmp_path / "registry-jwks.json"
    code, out, _ = run("keys", "jwks", "--output", str(target))
    assert code == 0 and out.strip() == str(target)
    assert json.loads(target.read_text()) == printed
    assert sorted(p.name for p in tmp_path.glob("*jwks*")) == ["registry-jwks.json"]

    # A certificate whose private key is gone (a retired signer) is still published.
    retired = keys.public[0]
    retired.path.with_suffix(".key").unlink()
    code, out, _ = run("keys", "jwks")
    assert code == 0 and retired.kid in [k["kid"] for k in json.loads(out)["keys"]]

    code, _, err = run("keys", "jwks", "--output", str(tmp_path / "no" / "such" / "dir.json"))
    assert code == 2 and "--output" in err and "Traceback" not in err


def test_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("token: {nope: 1}\n")
    assert cli.main(["user", "list", "--config", str(path)]) == 2
    assert "token.nope: unknown key" in capsys.readouterr().err


def test_config_from_environment(
    config_path: Path,
    config: Config,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TOKENSERVER_CONFIG", str(config_path))
    assert cli.main(["user", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.fixture
def fake_uvicorn(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """`serve` without a server: capture what would be run, keep logging untouched."""
    seen: dict[str, object] = {}

    def fake_run(app: object, **kwargs: object) -> None:
        seen.update(kwargs, app=app)

    monkeypatch.setattr("uvicorn.run", fake_run)
    monkeypatch.setattr("authcore.jsonlog.configure_logging", lambda level, keys: None)
    return seen


def test_serve_uses_addr_override(run: Run, fake_uvicorn: dict[str, object]) -> None:
    code, _, err = run("serve", "--addr", "0.0.0.0:7001")
    assert code == 0, err
    assert (fake_uvicorn["host"], fake_uvicorn["port"]) == ("0.0.0.0", 7001)
    assert fake_uvicorn["ssl_certfile"] is None


@pytest.mark.parametrize("addr", ["nonsense", "host:0", ":80"])
def test_serve_bad_addr_exits_2(run: Run, fake_uvicorn: dict[str, object], addr: str) -> None:
    code, _, err = run("serve", "--addr", addr)
    assert code == 2 and "HOST:PORT" in err
    assert not fake_uvicorn


def test_serve_tls_needs_both_halves(
    make_config: Callable[..., Config], run: Run, fake_uvicorn: dict[str, object]
) -> None:
    make_config({"server": {"tls": {"certificate": "tls.crt"}}})
    code, _, err = run("serve")
    assert code == 2 and "set together" in err
    assert not fake_uvicorn


@pytest.mark.parametrize("name", ["a:b", "team/alice", "with space", "tab\tname", "x" * 256, ""])
def test_unusable_user_names_refused(run: Run, users: UserStore, name: str) -> None:
    code, _, err = run("user", "add", name, "--password-stdin", stdin="pw-1\n")
    assert code == 2 and "name" in err
    assert users.list() == []


def test_unusable_group_names_refused(run: Run, users: UserStore) -> None:
    code, _, err = run("user", "add", "alice", "--password-stdin", "--group", "a:b", stdin="pw\n")
    assert code == 2 and "group name" in err
    assert users.get("alice") is None
    run("user", "add", "alice", "--password-stdin", "--group", "dev", stdin="pw\n")
    code, _, err = run("user", "groups", "alice", "--group", "bad group")
    assert code == 2 and "group name" in err
    assert users.get("alice").groups == ("dev",)  # type: ignore[union-attr]


def test_passwd_revokes_the_users_refresh_tokens(run: Run, database: Database) -> None:
    store = RefreshTokenStore(database)
    run("user", "add", "alice", "--password-stdin", stdin="pw-1\n")
    now = dt.datetime.now(dt.UTC)
    value = store.issue(
        "alice", "registry", "docker", dt.timedelta(days=1), now, backend="database"
    )
    other = store.issue("bob", "registry", "docker", dt.timedelta(days=1), now, backend="database")
    code, out, _ = run("user", "passwd", "alice", "--password-stdin", stdin="pw-2\n")
    assert code == 0 and "1 refresh token(s) revoked" in out
    assert store.use(value, now) is None
    assert store.use(other, now) is not None


def test_serve_ignores_forwarded_headers_unless_proxies_are_named(
    make_config: Callable[..., Config], run: Run, fake_uvicorn: dict[str, object]
) -> None:
    assert run("serve")[0] == 0
    assert fake_uvicorn["proxy_headers"] is False
    fake_uvicorn.clear()
    make_config({"server": {"trusted_proxies": ["127.0.0.2", "10.0.0.0/8"]}})
    assert run("serve")[0] == 0
    assert fake_uvicorn["proxy_headers"] is True
    assert fake_uvicorn["forwarded_allow_ips"] == "127.0.0.2,10.0.0.0/8"


TEAM_RULES = [
    {"match": {"account": "/.+/", "name": "${account}/*"}, "actions": ["*"], "comment": "own"},
    {
        "match": {"name": "team/*", "labels": {"groups": "developers"}},
        "actions": ["pull", "push"],
        "comment": "developers push team",
    },
    {"match": {"name": "team/secret"}, "actions": []},
    {"match": {"name": "team/*", "labels": {"groups": "ci"}}, "actions": ["pull"]},
]


def test_policy_check_names_the_deciding_rule(make_config: Callable[..., Config], run: Run) -> None:
    make_config({"acl": TEAM_RULES})
    code, out, err = run(
        "policy", "check", "--user", "carol", "--group", "ci",
        "--scope", "repository:team/app:pull,push",
        "--scope", "repository:team/secret:pull",
        "--scope", "repository:carol/x:push",
        "--scope", "repository:bob/x:pull",
    )  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 4
    assert "repository:team/app:pull,push" in lines[0] and "-> " in lines[0]
    assert lines[0].split("->")[1].split()[0] == "pull" and "rule 4" in lines[0]
    assert "denied" in lines[1] and "rule 3" in lines[1]
    assert lines[2].split("->")[1].split()[0] == "push" and "rule 1 (own)" in lines[2]
    assert "denied" in lines[3] and "no rule matched" in lines[3]

    code, out, _ = run(
        "policy", "check", "--user", "dave", "--group", "developers", "--json",
        "--scope", "repository:team/app:pull,push",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out) == [
        {
            "requested": "repository:team/app:pull,push",
            "granted": ["pull", "push"],
            "rule": 2,
            "reason": "rule 2 (developers push team)",
        }
    ]


def test_policy_check_default_rules_and_a_candidate_file(run: Run, tmp_path: Path) -> None:
    code, out, _ = run(
        "policy", "check", "--user", "alice", "--scope", "repository:alice/app:*", "--json"
    )
    assert code == 0
    assert json.loads(out)[0]["granted"] == ["delete", "pull", "push"]
    code, out, _ = run("policy", "check", "--anonymous", "--scope", "repository:a/b:pull")
    assert code == 0 and "denied" in out

    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(json.dumps([{"match": {"ip": "127.0.0.0/8"}, "actions": ["pull"]}]))
    argv = ["policy", "check", "--user", "x", "--scope", "repository:a/b:pull,push"]
    code, out, _ = run(*argv, "--acl-file", str(candidate), "--ip", "127.0.0.9", "--json")
    assert code == 0 and json.loads(out)[0]["granted"] == ["pull"]
    code, out, _ = run(*argv, "--acl-file", str(candidate), "--json")
    assert code == 0 and json.loads(out)[0]["granted"] == []

    candidate.write_text(json.dumps([{"match": {"ip": "bad"}, "actions": ["pull"]}]))
    code, _, err = run(*argv, "--acl-file", str(candidate))
    assert code == 2 and "rule 1 match.ip" in err


def test_policy_check_a_federated_identity_by_its_trust_label(
    make_config: Callable[..., Config], run: Run
) -> None:
    make_config(
        {
            "acl": [
                {
                    "match": {"labels": {"kind": "federated", "trust": "gha-*"}},
                    "actions": ["pull"],
                    "comment": "pipelines of GitHub trusts pull",
                }
            ]
        }
    )
    argv = ["policy", "check", "--user", "gha-app:repo:t/a", "--scope", "repository:t/a:pull"]
    code, out, err = run(*argv, "--kind", "federated", "--trust", "gha-app", "--json")
    assert code == 0, err
    assert json.loads(out)[0]["granted"] == ["pull"]
    code, out, _ = run(*argv, "--kind", "federated", "--trust", "gitlab-app", "--json")
    assert code == 0 and json.loads(out)[0]["granted"] == []
    code, _, err = run(*argv, "--trust", "gha-app")
    assert code == 2 and "--kind federated" in err


def test_policy_check_errors(run: Run) -> None:
    code, _, err = run("policy", "check", "--scope", "repository:a/b:pull")
    assert code == 2 and "--user" in err
    code, _, err = run("policy", "check", "--user", "a", "--scope", "repository:A:pull")
    assert code == 2 and "--scope" in err


def test_ci_token_create_list_revoke(run: Run, database: Database) -> None:
    code, out, err = run(
        "ci-token", "create", "ci-app", "--scope", "repository:team/app:pull,push",
        "--scope", "repository:team/*:pull", "--ttl", "30d", "--description", "deploys",
    )  # fmt: skip
    assert code == 0, err
    secret = out.strip()
    assert secret.startswith("tsci_") and "\n" not in secret
    code, out, _ = run("ci-token", "list", "--json")
    (entry,) = json.loads(out)
    assert entry["name"] == "ci-app" and entry["state"] == "live"
    assert entry["scopes"] == ["repository:team/app:pull,push", "repository:team/*:pull"]
    expires = dt.datetime.fromisoformat(entry["expires_at"])
    assert abs((expires - dt.datetime.now(dt.UTC)) - dt.timedelta(days=30)) < dt.timedelta(
        minutes=1
    )
    assert secret not in out
    code, out, _ = run("ci-token", "list")
    assert code == 0 and "ci-app" in out and "live" in out and secret not in out

    code, _, err = run("ci-token", "create", "ci-app", "--scope", "repository:a/b:pull",
                       "--ttl", "1h")  # fmt: skip
    assert code == 2 and "revoke it first" in err
    assert run("ci-token", "revoke", "ci-app")[0] == 0
    assert json.loads(run("ci-token", "list", "--json")[1])[0]["state"] == "revoked"
    code, _, err = run("ci-token", "revoke", "ci-app")
    assert code == 2 and "no live CI token" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scope", "repository:a/b:pull", "--ttl", "soon"], "duration"),
        (["--scope", "repository:a/b:pull", "--ttl", "0"], "duration"),
        (["--scope", "repository:a/b:pull", "--ttl", "1000w"], "maximum"),
        (["--scope", "junk", "--ttl", "1h"], "bad scope"),
    ],
)
def test_ci_token_create_errors(run: Run, args: list[str], message: str) -> None:
    code, out, err = run("ci-token", "create", "ci-x", *args)
    assert code == 2 and message in err and not out


def test_audit_tail(run: Run, client: Any, add_user: Callable[..., str]) -> None:
    password = add_user("alice")
    client.get("/token", params={"service": "registry"}, auth=("alice", password))
    client.get("/token", params={"service": "registry"}, auth=("alice", "wrong"))
    assert client.app.state.services.audit.flush(5)
    code, out, _ = run("audit", "tail", "--since", "10m")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert "granted" in lines[0] and "bad_credentials" in lines[1]
    code, out, _ = run("audit", "tail", "--json", "--outcome", "bad_credentials")
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert row["subject"] == "alice" and row["client_ip"] == "testclient"
    assert password not in out


@pytest.mark.parametrize("since", ["2900000d", "999999999999w"])
def test_audit_tail_refuses_a_time_before_any_date(run: Run, since: str) -> None:
    code, out, err = run("audit", "tail", "--since", since)
    assert code == 2 and "at most 100 years" in err and not out


def test_serve_checks_the_ldap_password_file_first(
    make_config: Callable[..., Config], run: Run, fake_uvicorn: dict[str, object]
) -> None:
    make_config(
        {
            "ldap": {
                "url": "ldap://127.0.0.1:389",
                "base_dn": "dc=example,dc=test",
                "bind_password_file": "missing.pw",
            }
        }
    )
    code, _, err = run("serve")
    assert code == 2 and "ldap.bind_password_file" in err
    assert not fake_uvicorn


TRUST_ARGS = (
    "--issuer",
    "https://token.actions.githubusercontent.com",
    "--audience",
    "https://registry.example",
    "--scope",
    "repository:e/app:pull,push",
)


def test_trust_add_list_and_del(run: Run) -> None:
    code, out, err = run(
        "trust", "add", "gha-app", *TRUST_ARGS, "--claim", "ref=refs/heads/main", "--max-age", "10m"
    )
    assert code == 0, err
    assert "gha-app" in out
    code, out, _ = run("trust", "list", "--json")
    assert code == 0
    assert json.loads(out) == [
        {
            "name": "gha-app",
            "issuer": "https://token.actions.githubusercontent.com",
            "audience": "https://registry.example",
            "scopes": ["repository:e/app:pull,push"],
            "claims": {"ref": "refs/heads/main"},
            "max_age": 600,
            "source": "database",
        }
    ]
    code, out, _ = run("trust", "list")
    assert code == 0 and out.startswith("gha-app\thttps://token.actions.githubusercontent.com")
    code, _, err = run("trust", "add", "bad", *TRUST_ARGS, "--claim", "no-equals-sign")
    assert code == 2 and "CLAIM=PATTERN" in err
    code, _, err = run("trust", "add", "bad", *TRUST_ARGS[2:], "--issuer", "http://x.example")
    assert code == 2 and "https" in err
    assert run("trust", "del", "gha-app")[0] == 0
    code, _, err = run("trust", "del", "gha-app")
    assert code == 2 and "no trust" in err
    assert json.loads(run("trust", "list", "--json")[1]) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--claim", "ref=/a{99999999999}/"], "claims.ref: "),
        (["--claim", "ref=/" + "(" * 500 + "a" + ")" * 500 + "/"], "claims.ref: "),
        (["--claim", "ref=/^(?=refs)/"], "claims.ref: "),
        (["--ca-file", "/etc/passwd"], "not a PEM file"),
        (["--ca-file", "/nonexistent/ca.pem"], "No such file"),
    ],
)
def test_trust_add_refuses_what_cannot_be_used(run: Run, args: list[str], message: str) -> None:
    code, _, err = run("trust", "add", "gha-bad", *TRUST_ARGS, *args)
    assert code == 2 and message in err, err
    assert json.loads(run("trust", "list", "--json")[1]) == []


def test_every_cli_change_is_audited(
    run: Run, monkeypatch: pytest.MonkeyPatch, leak_guard: Any, config: Config
) -> None:
    monkeypatch.setenv("SUDO_USER", "operator7")
    password = leak_guard.add("pw-cli-audited")
    steps = [
        (["user", "add", "erin", "--password-stdin", "--group", "dev"], password + "\n", 0),
        (["user", "add", "ERIN", "--password-stdin"], password + "\n", 2),
        (["user", "passwd", "erin", "--password-stdin"], leak_guard.add("pw-cli-2") + "\n", 0),
        (["user", "groups", "erin", "--group", "qa"], "", 0),
        (["user", "disable", "erin"], "", 0),
        (["user", "enable", "erin"], "", 0),
        (["refresh-token", "revoke", "--user", "erin"], "", 0),
        (["ci-token", "create", "ci-erin", "--scope", "repository:e/*:pull", "--ttl", "1h"], "", 0),
        (["ci-token", "create", "ci-adm", "--scope", "admin:api:*", "--ttl", "1h"], "", 2),
        (["ci-token", "create", "erin", "--scope", "repository:e/*:pull", "--ttl", "1h"], "", 2),
        (["ci-token", "revoke", "ci-erin"], "", 0),
        (["trust", "add", "gha-erin", *TRUST_ARGS, "--claim", "repository=e/app"], "", 0),
        (["trust", "add", "Erin", *TRUST_ARGS], "", 2),
        (["trust", "add", "gha-adm", *TRUST_ARGS, "--scope", "admin:api:*"], "", 2),
        (["trust", "del", "gha-erin"], "", 0),
        (["user", "del", "erin"], "", 0),
        (["user", "del", "erin"], "", 2),
        (["keys", "generate"], "", 0),
    ]
    for argv, stdin, expected in steps:
        code, out, err = run(*argv, stdin=stdin)
        assert code == expected, (argv, err)
        if argv[:2] == ["ci-token", "create"] and code == 0:
            leak_guard.add(out.strip())
    code, out, _ = run("audit", "tail", "--json", "--since", "10m")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert {(r["subject"], r["via"], r["kind"]) for r in rows} == {("operator7", "cli", "local")}
    assert [(r["action"], r["target"], r["outcome"]) for r in rows[:-1]] == [
        ("user.create", "erin", "ok"),
        ("user.create", "ERIN", "conflict"),
        ("user.password", "erin", "ok"),
        ("user.groups", "erin", "ok"),
        ("user.disable", "erin", "ok"),
        ("user.enable", "erin", "ok"),
        ("refresh_token.revoke", "erin", "ok"),
        ("ci_token.create", "ci-erin", "ok"),
        ("ci_token.create", "ci-adm", "invalid_request"),
        ("ci_token.create", "erin", "conflict"),
        ("ci_token.revoke", "ci-erin", "ok"),
        ("trust.create", "gha-erin", "ok"),
        ("trust.create", "Erin", "conflict"),
        ("trust.create", "gha-adm", "invalid_request"),
        ("trust.delete", "gha-erin", "ok"),
        ("user.delete", "erin", "ok"),
        ("user.delete", "erin", "not_found"),
    ]
    generated = rows[-1]
    assert generated["action"] == "keys.generate" and generated["outcome"] == "ok"
    assert (config.token.keys_dir / f"{generated['target']}.crt").exists()
    assert not leak_guard.found_in(out)

    code, out, _ = run("audit", "tail", "--since", "10m", "--action", "user.delete")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert all("operator7\tcli" in line and "user.delete\ttarget=erin" in line for line in lines)


def test_without_a_config_the_command_fails_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TOKENSERVER_CONFIG", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO("pw-nobody-asked\n"))
    code = cli.main(["user", "add", "alice", "--password-stdin"])
    err = capsys.readouterr().err
    assert code == 2
    assert "no configuration" in err and "--config" in err and "TOKENSERVER_CONFIG" in err
    assert list(tmp_path.iterdir()) == []  # no database nobody asked for


def test_without_a_config_the_dev_config_is_used_and_named(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    keys_dir: Path,
) -> None:
    dev = tmp_path / "checkout" / "var" / "dev"
    dev.mkdir(parents=True)
    (dev / "tokenserver.yaml").write_text(
        yaml.safe_dump(
            {
                "token": {"keys_dir": str(keys_dir)},
                "database": {"url": "sqlite:///tokenserver.db"},
                "users": {"bcrypt_cost": 4},
            }
        )
    )
    monkeypatch.chdir(tmp_path / "checkout")
    monkeypatch.delenv("TOKENSERVER_CONFIG", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO("pw-dev-user-1\n"))
    assert cli.main(["user", "add", "alice", "--password-stdin"]) == 0
    err = capsys.readouterr().err
    assert f"using the dev configuration {dev / 'tokenserver.yaml'}" in err
    assert (dev / "tokenserver.db").exists() and not (
        tmp_path / "checkout" / "tokenserver.db"
    ).exists()
    assert cli.main(["user", "list", "--json"]) == 0
    assert [u["name"] for u in json.loads(capsys.readouterr().out)] == ["alice"]


def _web_session(database: Database, users: UserStore, name: str) -> str:
    """A web session of database user `name`, as signing in to the page leaves it."""
    info = users.get(name)
    assert info is not None
    cookie, _session = UISessionStore(database).create(
        name,
        "database",
        account_key(info.account_id, info.password_hash),
        dt.datetime.now(dt.UTC),
        dt.timedelta(hours=1),
    )
    return cookie


def _live(database: Database, cookie: str) -> bool:
    return UISessionStore(database).get(cookie, dt.datetime.now(dt.UTC)) is not None


def test_user_changes_end_web_sessions(run: Run, database: Database, users: UserStore) -> None:
    run("user", "add", "alice", "--password-stdin", "--group", "admin", stdin="pw-1\n")
    run("user", "add", "bob", "--password-stdin", "--group", "admin", stdin="pw-b\n")
    bob = _web_session(database, users, "bob")

    first, second = _web_session(database, users, "alice"), _web_session(database, users, "alice")
    code, out, _ = run("user", "passwd", "alice", "--password-stdin", stdin="pw-2\n")
    assert code == 0 and out.endswith("0 refresh token(s) revoked, 2 web session(s) ended\n")
    assert not _live(database, first) and not _live(database, second)

    kept = _web_session(database, users, "alice")
    assert run("user", "groups", "alice", "--group", "admin", "--group", "ops")[0] == 0
    assert _live(database, kept)
    for argv in (
        ("user", "groups", "alice", "--group", "ops"),
        ("user", "disable", "alice"),
        ("user", "del", "alice"),
    ):
        cookie = _web_session(database, users, "alice")
        code, out, _ = run(*argv)
        assert code == 0 and not _live(database, cookie), argv
        if argv[1] == "groups":
            run("user", "groups", "alice", "--group", "admin")
        elif argv[1] == "disable":
            run("user", "enable", "alice")
    assert out == "user alice deleted; 0 refresh token(s) revoked, 1 web session(s) ended\n"
    assert _live(database, bob)  # another user's session stays


def test_ui_session_list_and_end(run: Run, database: Database, users: UserStore) -> None:
    run("user", "add", "alice", "--password-stdin", "--group", "admin", stdin="pw-1\n")
    run("user", "add", "bob", "--password-stdin", "--group", "admin", stdin="pw-b\n")
    alice = [_web_session(database, users, "alice") for _ in range(2)]
    bob = _web_session(database, users, "bob")

    code, out, _ = run("ui-session", "list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [(s["user"], s["backend"]) for s in listed] == [
        ("alice", "database"),
        ("alice", "database"),
        ("bob", "database"),
    ]
    assert all(set(s) == {"id", "user", "backend", "created_at", "expires_at"} for s in listed)
    assert not any(cookie in out for cookie in (*alice, bob))
    code, out, _ = run("ui-session", "list", "--user", "ALICE")
    assert code == 0 and [line.split("\t")[1] for line in out.splitlines()] == ["alice", "alice"]

    code, out, _ = run("ui-session", "end", str(listed[0]["id"]))
    assert code == 0 and out == f"web session {listed[0]['id']} ended\n"
    assert not _live(database, alice[0]) and _live(database, alice[1])
    code, _, err = run("ui-session", "end", str(listed[0]["id"]))
    assert code == 2 and f"no live web session {listed[0]['id']}" in err
    code, out, _ = run("ui-session", "end", "--user", "Alice")
    assert code == 0 and out == "ended 1 web session(s) of Alice\n"
    assert not _live(database, alice[1]) and _live(database, bob)

    for argv, message in (
        (("ui-session", "end"), "one of them"),
        (("ui-session", "end", "1", "--user", "bob"), "one of them"),
        (("ui-session", "end", "abc"), "not a number"),
        (("ui-session", "end", "\u00b2"), "not a number"),
        (("ui-session", "end", "-1"), "not a number"),
        (("ui-session", "end", "0"), "out of range"),
        (("ui-session", "end", str(2**63)), "out of range"),
        (("ui-session", "end", "9" * 5000), "not a number"),
        (("ui-session", "end", "--user", "a:b"), "no user"),
        (("ui-session", "list", "--user", "a\x00b"), "no user"),
    ):
        code, _, err = run(*argv)
        assert code == 2 and message in err and "Traceback" not in err, (argv, err)
    assert _live(database, bob)

    trail = json.loads(
        "["
        + ",".join(run("audit", "tail", "--json", "--action", "ui_session.end")[1].splitlines())
        + "]"
    )
    assert [(r["target"], r["outcome"], r["via"]) for r in trail] == [
        (f"#{listed[0]['id']}", "ok", "cli"),
        (f"#{listed[0]['id']}", "not_found", "cli"),
        ("Alice", "ok", "cli"),
        ("a:b", "not_found", "cli"),
    ]


# -- personal tokens ---------------------------------------------------------------


def test_personal_token_create_list_revoke(run: Run, users: UserStore, database: Database) -> None:
    users.add("alice", "x", ("dev",))
    code, out, err = run(
        "personal-token", "create", "laptop", "--user", "alice",
        "--scope", "repository:alice/*:pull,push", "--scope", "repository:team/*:pull",
        "--ttl", "30d",
    )  # fmt: skip
    assert code == 0, err
    secret = out.strip()
    assert secret.startswith("tspat_") and out == secret + "\n"
    code, out, _ = run("personal-token", "list", "--json")
    (entry,) = json.loads(out)
    assert (entry["owner"], entry["name"], entry["state"]) == ("alice", "laptop", "live")
    assert entry["scopes"] == ["repository:alice/*:pull,push", "repository:team/*:pull"]
    assert secret not in out and "secret" not in entry
    expires = dt.datetime.fromisoformat(entry["expires_at"])
    assert abs(expires - dt.datetime.now(dt.UTC) - dt.timedelta(days=30)) < dt.timedelta(minutes=1)
    code, out, _ = run("personal-token", "list", "--user", "ALICE")
    assert code == 0 and out.startswith("alice\tlaptop\trepository:alice/*:pull,push")
    assert run("personal-token", "list", "--user", "bob", "--json")[1] == "[]\n"
    code, out, _ = run("personal-token", "revoke", "laptop", "--user", "alice")
    assert code == 0 and out == "personal token laptop of alice revoked\n"
    assert json.loads(run("personal-token", "list", "--json")[1])[0]["state"] == "revoked"
    code, _, err = run("personal-token", "revoke", "laptop", "--user", "alice")
    assert code != 0 and "no live token named laptop" in err
    with database.engine.connect() as conn:
        acts = conn.execute(
            text("SELECT action, target, outcome FROM audit_events ORDER BY id")
        ).all()
    assert [tuple(a) for a in acts] == [
        ("personal_token.create", "alice/laptop", "ok"),
        ("personal_token.revoke", "alice/laptop", "ok"),
        ("personal_token.revoke", "alice/laptop", "not_found"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "alice", "--scope", "repository:a/b:pull", "--ttl", "91d"], "maximum"),
        (["--user", "alice", "--scope", "repository:a/b:pull", "--ttl", "soon"], "duration"),
        (["--user", "alice", "--scope", "admin:api:*", "--ttl", "1d"], "admin scopes"),
        (["--user", "alice", "--scope", "nonsense", "--ttl", "1d"], "bad scope"),
        (["--user", "nobody", "--scope", "repository:a/b:pull", "--ttl", "1d"], "no person"),
        (["--user", "dana", "--scope", "repository:a/b:pull", "--ttl", "1d"], "no person"),
    ],
)
def test_personal_token_create_errors(
    run: Run, users: UserStore, database: Database, args: list[str], message: str
) -> None:
    users.add("alice", "x")
    users.add("dana", "x")
    users.set_disabled("dana", True)
    code, out, err = run("personal-token", "create", "t", *args)
    assert code != 0 and out == "" and message in err, err
    with database.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM personal_tokens")).scalar_one() == 0


def test_a_user_deleted_by_the_cli_loses_their_personal_tokens(run: Run, users: UserStore) -> None:
    users.add("alice", "x")
    assert run("personal-token", "create", "t", "--user", "alice", "--scope",
               "repository:alice/a:pull", "--ttl", "1d")[0] == 0  # fmt: skip
    code, out, _ = run("user", "del", "alice")
    assert code == 0 and "1 personal token(s) revoked" in out

"""Access rules and trust claims run in RE2, against a real token-server process.

Rules and claims are an administrator's, the values matched against them an
attacker's: a repository name in an anonymous scope, a claim of an ID token.
With Python's backtracking `re`, `/^(a+)+$/` against twenty-seven `a`s and a
`!` held the whole process for 12 s; here ten thousand characters are
answered at once, and `/healthz` beside them. A pattern RE2 cannot compile is
refused where it is written: a 400, a start-up error naming the rule, or a
"refused" line when a rules file is read again.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import yaml

from tests.support.oidc import OIDCIssuer
from tests.support.tokenserver import ROOT, TokenServer

SERVICE = "registry"
AUDIENCE = "https://registry.example"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
CATASTROPHIC = "/^(a+)+$/"
# What a request may take before we call the process stuck: far more than a
# linear match needs, far less than the backtracking one (years, at 10 000).
PATIENCE = 20.0

# The default rules, written out (README "Access rules"), then one of our own.
DEFAULTS: list[dict[str, Any]] = [
    {"match": {"account": "/.+/", "labels": {"groups": "admin", "kind": "user"}}, "actions": ["*"]},
    {
        "match": {
            "account": "/.+/",
            "type": "repository",
            "name": "/^${account}\\/.+$/",
            "labels": {"kind": "user"},
        },
        "actions": ["pull", "push", "delete"],
    },
    {"match": {"account": "/.+/", "labels": {"kind": "ci"}}, "actions": ["*"]},
    {"match": {"account": "/.+/", "labels": {"kind": "federated"}}, "actions": ["*"]},
]
RULES = [
    *DEFAULTS,
    {
        "match": {"account": "", "name": "/^([a-z]+)+$/"},
        "actions": ["pull"],
        "comment": "anonymous pulls of one-word names",
    },
]


def _write_rules(path: Path, rules: object) -> None:
    """As an editor saves: a new file renamed over the old, so the change is always seen."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(rules if isinstance(rules, str) else yaml.safe_dump(rules))
    os.replace(tmp, path)


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OIDCIssuer]:
    with OIDCIssuer(tmp_path_factory.mktemp("oidc")) as running:
        yield running


@pytest.fixture(scope="module")
def acl_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "acl.yaml"
    _write_rules(path, RULES)
    return path


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, issuer: OIDCIssuer, acl_path: Path, real_peer: None
) -> Iterator[TokenServer]:
    trust = {
        "name": "gha-linear",
        "issuer": issuer.url,
        "audience": AUDIENCE,
        "ca_file": str(issuer.ca_file),
        "scopes": ["repository:team/app:pull"],
        "claims": {"ref": CATASTROPHIC},
    }
    ts = TokenServer(
        tmp_path_factory.mktemp("linear"),
        extra={"users": {"bcrypt_cost": 4}, "acl_file": str(acl_path), "federation": [trust]},
    )
    ts.add_user("root", "root-pw-1", "admin")
    with ts:
        yield ts


def _exchange(server: TokenServer, token: str) -> httpx.Response:
    form = {
        "grant_type": EXCHANGE,
        "subject_token": token,
        "subject_token_type": ID_TOKEN,
        "service": SERVICE,
        "scope": "repository:team/app:pull",
    }
    return httpx.post(f"{server.url}/token", data=form, timeout=PATIENCE)


def _anonymous(server: TokenServer, name: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{server.url}/token",
        params={"service": SERVICE, "scope": f"repository:{name}:pull"},
        timeout=PATIENCE,
    )
    assert answer.status_code == 200, answer.text
    access: list[dict[str, Any]] = jwt.decode(
        answer.json()["token"], options={"verify_signature": False}
    )["access"]
    return access


def _healthy_beside(server: TokenServer, work: list[Any]) -> list[Any]:
    """Run `work` (callables) at once, and ask /healthz while they run; their answers."""
    with concurrent.futures.ThreadPoolExecutor(len(work)) as pool:
        running = [pool.submit(w) for w in work]
        health = httpx.get(f"{server.url}/healthz", timeout=PATIENCE)
        assert health.status_code == 200
        return [f.result(timeout=PATIENCE) for f in running]


def test_a_catastrophic_claim_pattern_answers_at_once(
    server: TokenServer, issuer: OIDCIssuer
) -> None:
    def token(ref: str) -> str:
        # The ref once, in `ref`: the token stays within the 16 KiB an ID token may have.
        elsewhere = {"sub": "repo:team/app:ref:long", "workflow_ref": "w", "job_workflow_ref": "w"}
        claims = issuer.github_actions(AUDIENCE, ref=ref, **elsewhere)
        return issuer.sign(claims)

    hostile = token("a" * 10_000 + "!")
    answers = _healthy_beside(server, [lambda: _exchange(server, hostile)] * 4)
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_request"
    matching = _exchange(server, token("a" * 10_000))
    assert matching.status_code == 200, matching.text
    assert matching.json()["scope"] == "repository:team/app:pull"


def test_a_catastrophic_acl_rule_answers_at_once(server: TokenServer) -> None:
    hostile = "a" * 250 + "0"  # a valid repository name the rule almost matches
    answers = _healthy_beside(server, [lambda: _anonymous(server, hostile)] * 4)
    assert answers == [[]] * 4
    name = "a" * 255
    assert _anonymous(server, name) == [{"type": "repository", "name": name, "actions": ["pull"]}]


NESTED = "/" + "(" * 500 + "a" + ")" * 500 + "/"
UNCOMPILABLE = ["/a{99999999999}/", NESTED, "/^(?=refs)/", "/(a)\\1/", "/(/"]


@pytest.mark.parametrize("pattern", UNCOMPILABLE)
def test_a_trust_claim_re2_refuses_is_a_400(
    server: TokenServer, issuer: OIDCIssuer, pattern: str
) -> None:
    body = {
        "name": "gha-refused",
        "issuer": issuer.url,
        "audience": AUDIENCE,
        "scopes": ["repository:team/app:pull"],
        "claims": {"ref": pattern},
    }
    answer = httpx.post(
        f"{server.url}/admin/v1/federation-trusts",
        json=body,
        auth=("root", "root-pw-1"),
        timeout=PATIENCE,
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()
    assert error["error"] == "invalid_request"
    assert error["error_description"].startswith("claims.ref: ")
    assert error["details"] == error["error_description"]


def _log_entries(server: TokenServer, offset: int = 0) -> list[dict[str, Any]]:
    text = server.log_text()[offset:]
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.parametrize(
    "bad",
    [
        [*RULES, {"match": {"name": "/a{99999999999}/"}, "actions": []}],
        [*RULES, {"match": {"name": NESTED}, "actions": []}],
        [*RULES, {"match": {"labels": {"groups": "/(?!ops)/"}}, "actions": []}],
        "[" * 5000 + "]" * 5000,
    ],
)
def test_a_reloaded_rules_file_re2_refuses_keeps_the_rules(
    server: TokenServer, acl_path: Path, bad: object
) -> None:
    offset = len(server.log_text())
    _write_rules(acl_path, bad)
    try:
        name = "a" * 255
        # The request that finds the new file is answered by the rules in force.
        assert _anonymous(server, name) == [
            {"type": "repository", "name": name, "actions": ["pull"]}
        ]
        assert _anonymous(server, "b" * 10 + "0") == []
        entries = _log_entries(server, offset)
        (refused,) = [e for e in entries if e.get("msg", "").startswith("acl file refused")]
        assert refused["level"] == "error"
        assert "rule 6 match" in refused["reason"] or "nested too deeply" in refused["reason"]
        assert not [e for e in entries if "exc" in e]
        assert [e["status"] for e in entries if e.get("msg") == "request"] == [200, 200]
    finally:
        _write_rules(acl_path, RULES)
    assert _anonymous(server, "a" * 255)  # read again, as good as before


def _start(tmp_path: Path, extra: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """`tokenserver serve` with this configuration; it is expected to refuse to start."""
    config = {
        "server": {"addr": "127.0.0.1:1"},
        "token": {"keys_dir": str(tmp_path / "keys")},
        "database": {"url": f"sqlite:///{tmp_path / 'tokenserver.db'}"},
    } | extra
    path = tmp_path / "tokenserver.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENSERVER_")}
    return subprocess.run(
        [sys.executable, "-m", "tokenserver", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )


def _trust(issuer: OIDCIssuer, **fields: Any) -> dict[str, Any]:
    return {
        "name": "gha-start",
        "issuer": issuer.url,
        "audience": AUDIENCE,
        "scopes": ["repository:team/app:pull"],
    } | fields


@pytest.mark.peers
@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("acl_file", "rule 6 match.name: "),
        ("acl", "acl.5.match.name: "),
        ("claim", "federation.0: Value error, claims.ref: "),
        ("ca_not_pem", "federation.0 (gha-start): ca_file "),
        ("ca_missing", "federation.0 (gha-start): ca_file "),
    ],
)
def test_a_configuration_re2_or_ssl_refuses_stops_the_start_naming_it(
    tmp_path: Path, issuer: OIDCIssuer, setting: str, named: str
) -> None:
    bad_rules = [*RULES, {"match": {"name": "/a{99999999999}/"}, "actions": []}]
    rules_file = tmp_path / "acl.yaml"
    _write_rules(rules_file, bad_rules)
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    extra: dict[str, Any] = {
        "acl_file": {"acl_file": str(rules_file)},
        "acl": {"acl": bad_rules},
        "claim": {"federation": [_trust(issuer, claims={"ref": NESTED})]},
        "ca_not_pem": {"federation": [_trust(issuer, ca_file=str(not_pem))]},
        "ca_missing": {"federation": [_trust(issuer, ca_file=str(tmp_path / "nowhere.pem"))]},
    }[setting]
    result = _start(tmp_path, extra)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def test_nothing_failed_but_the_refused_files(server: TokenServer) -> None:
    """Runs last in this module: no 5xx, no traceback, no error but the refusals."""
    entries = _log_entries(server)
    assert entries
    errors = [e for e in entries if e["level"] in ("error", "critical") or "exc" in e]
    assert errors and all(e["msg"].startswith("acl file refused") for e in errors), errors[:3]
    statuses = [e["status"] for e in entries if e.get("msg") == "request"]
    assert statuses and max(statuses) < 500
    assert "Traceback" not in server.log_text()

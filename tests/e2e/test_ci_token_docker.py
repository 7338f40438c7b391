"""A CI token used by the Docker engine: login, scoped push, revocation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.images import write_docker_archive
from tests.support.peers import Dockerd, GoRegistry
from tests.support.tokenserver import TokenServer

pytestmark = pytest.mark.e2e

CI_NAME = "ci-app"
CI_SCOPE = "repository:team/app:pull,push"


@dataclass
class Stack:
    tokens: TokenServer
    registry: GoRegistry


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("ci-token-stack")
    with (
        TokenServer(work / "ts") as tokens,
        GoRegistry(work / "registry", token=tokens.registry_auth()) as registry,
    ):
        yield Stack(tokens, registry)


def test_ci_token_login_scoped_push_and_revoke(
    stack: Stack, dockerd: Dockerd, tmp_path: Path
) -> None:
    tokens, addr = stack.tokens, stack.registry.addr
    secret = tokens.cli("ci-token", "create", CI_NAME, "--scope", CI_SCOPE, "--ttl", "30d").strip()
    assert secret.startswith("tsci_"), "create prints only the secret"
    assert "\n" not in secret

    offset = len(tokens.log_text())
    dockerd.docker("login", addr, "-u", CI_NAME, "--password-stdin", input=secret)
    auth = dockerd.config_json()["auths"][addr]
    assert "identitytoken" not in auth, "no refresh token for a CI token"
    assert auth.get("auth"), "docker stored the name and secret instead"

    allowed = f"{addr}/team/app:v1"
    archive = write_docker_archive(tmp_path / "app.tar", repo_tag=allowed, seed="ci-app")
    dockerd.docker("load", "-i", str(archive.path))
    dockerd.docker("push", allowed)

    other = f"{addr}/team/other:v1"
    dockerd.docker("tag", allowed, other)
    refused = dockerd.docker("push", other, check=False)
    assert refused.returncode != 0
    assert "denied" in refused.stderr, refused.stderr

    issued = tokens.issued_since(offset)
    assert issued, "login and push asked for tokens"
    assert all(e["account"] == CI_NAME and e["kind"] == "ci" for e in issued)
    assert any("repository:team/app:pull,push" in str(e["granted"]) for e in issued)
    assert not any("team/other" in str(e["granted"]) for e in issued)

    tokens.cli("ci-token", "revoke", CI_NAME)
    dockerd.docker("logout", addr)
    relogin = dockerd.docker(
        "login", addr, "-u", CI_NAME, "--password-stdin", input=secret, check=False
    )
    assert relogin.returncode != 0, "a revoked CI token no longer logs in"
    assert "invalid username or password" in relogin.stderr, relogin.stderr
    assert addr not in dockerd.config_json().get("auths", {})

    (listed,) = [
        t for t in json.loads(tokens.cli("ci-token", "list", "--json")) if t["name"] == CI_NAME
    ]
    assert listed["state"] == "revoked"
    assert listed["last_used_at"] is not None
    assert listed["scopes"] == [CI_SCOPE]
    assert secret not in tokens.log_text(), "the secret reached the token server's log"

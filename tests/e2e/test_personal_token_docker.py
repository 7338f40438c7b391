"""A person's own token used by the Docker engine: login as the person, push to their
namespace, refused elsewhere, ended with the person."""

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

PERSON, PASSWORD = "alice", "alice-pw-1"
SCOPES = ("repository:alice/*:pull,push", "repository:team/*:pull,push")


@dataclass
class Stack:
    tokens: TokenServer
    registry: GoRegistry


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("personal-token-stack")
    with (
        TokenServer(work / "ts") as tokens,
        GoRegistry(work / "registry", token=tokens.registry_auth()) as registry,
    ):
        tokens.add_user(PERSON, PASSWORD, "dev")
        yield Stack(tokens, registry)


def test_docker_login_with_a_personal_token_pushes_only_where_the_person_may(
    stack: Stack, dockerd: Dockerd, tmp_path: Path
) -> None:
    tokens, addr = stack.tokens, stack.registry.addr
    scope_args = [arg for scope in SCOPES for arg in ("--scope", scope)]
    secret = tokens.cli(
        "personal-token", "create", "laptop", "--user", PERSON, *scope_args, "--ttl", "1d"
    ).strip()
    assert secret.startswith("tspat_") and "\n" not in secret

    offset = len(tokens.log_text())
    dockerd.docker("login", addr, "-u", PERSON, "-p", secret)
    auth = dockerd.config_json()["auths"][addr]
    assert "identitytoken" not in auth, "no refresh token: it would outlive the personal token"

    own = f"{addr}/alice/app:v1"
    archive = write_docker_archive(tmp_path / "app.tar", repo_tag=own, seed="alice-pat")
    dockerd.docker("load", "-i", str(archive.path))
    dockerd.docker("push", own)
    # The token's scopes reach team/*, but the rules give alice only her own namespace.
    for elsewhere in (f"{addr}/team/app:v1", f"{addr}/bob/app:v1"):
        dockerd.docker("tag", own, elsewhere)
        refused = dockerd.docker("push", elsewhere, check=False)
        assert refused.returncode != 0 and "denied" in refused.stderr, refused.stderr

    issued = tokens.issued_since(offset)
    assert issued and all(e["account"] == PERSON and e["kind"] == "user" for e in issued)
    assert any("repository:alice/app:pull,push" in str(e["granted"]) for e in issued)
    assert not any("team/app" in str(e["granted"]) or "bob/" in str(e["granted"]) for e in issued)

    # Disabled, the person's tokens end for good: enabled again, the token stays ended.
    tokens.cli("user", "disable", PERSON)
    tokens.cli("user", "enable", PERSON)
    dockerd.docker("logout", addr)
    relogin = dockerd.docker("login", addr, "-u", PERSON, "-p", secret, check=False)
    assert relogin.returncode != 0 and "invalid username or password" in relogin.stderr

    (listed,) = json.loads(tokens.cli("personal-token", "list", "--user", PERSON, "--json"))
    assert listed["state"] == "revoked" and listed["last_used_at"] is not None
    assert secret not in tokens.log_text(), "the secret reached the token server's log"

"""The Docker engine and containerd's ctr against the Go registry with our tokens."""

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

PASSWORD = "dora-pw-1"


@dataclass
class Stack:
    tokens: TokenServer
    registry: GoRegistry


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("docker-stack")
    with TokenServer(work / "ts") as tokens:
        tokens.add_user("dora", PASSWORD)
        tokens.add_user("carl", PASSWORD)
        registry = GoRegistry(
            work / "registry",
            token=tokens.registry_auth(),
        )
        with registry:
            yield Stack(tokens, registry)


def test_docker_login_push_pull_with_refresh_token_then_revoke(
    stack: Stack, dockerd: Dockerd, tmp_path: Path
) -> None:
    addr = stack.registry.addr
    image = f"{addr}/dora/app:v1"
    dockerd.docker("login", addr, "-u", "dora", "--password-stdin", input=PASSWORD)
    auth = dockerd.config_json()["auths"][addr]
    assert auth.get("identitytoken", "").startswith("rt_"), "docker stored our refresh token"

    archive = write_docker_archive(tmp_path / "img.tar", repo_tag=image, seed="dora")
    dockerd.docker("load", "-i", str(archive.path))

    offset = len(stack.tokens.log_text())
    dockerd.docker("push", image)
    dockerd.docker("rmi", image)
    dockerd.docker("pull", image)
    inspected = json.loads(dockerd.docker("image", "inspect", image).stdout)
    assert inspected[0]["Id"] == archive.config_digest

    issued = stack.tokens.issued_since(offset)
    assert issued, "push and pull asked for tokens"
    assert {e["via"] for e in issued} == {"refresh_token"}
    assert all(e["account"] == "dora" for e in issued)
    assert any("repository:dora/app:pull,push" in e["granted"] for e in issued)

    stack.tokens.cli("refresh-token", "revoke", "--user", "dora")
    dockerd.docker("tag", image, f"{addr}/dora/app:v2")
    refused = dockerd.docker("push", f"{addr}/dora/app:v2", check=False)
    assert refused.returncode != 0

    dockerd.docker("login", addr, "-u", "dora", "--password-stdin", input=PASSWORD)
    dockerd.docker("push", f"{addr}/dora/app:v2")


def test_ctr_push_and_pull_with_password_grant(
    stack: Stack, dockerd: Dockerd, tmp_path: Path
) -> None:
    addr = stack.registry.addr
    ref = f"{addr}/carl/tool:v1"
    archive = write_docker_archive(tmp_path / "ctr.tar", repo_tag=ref, seed="carl")
    dockerd.ctr("images", "import", "--platform", "linux/amd64", str(archive.path))

    offset = len(stack.tokens.log_text())
    dockerd.ctr("images", "push", "--plain-http", "--user", f"carl:{PASSWORD}", ref)
    dockerd.ctr("images", "rm", ref)
    dockerd.ctr("images", "pull", "--plain-http", "--user", f"carl:{PASSWORD}", ref)
    listed = dockerd.ctr("images", "ls", "-q").stdout.split()
    assert ref in listed

    issued = stack.tokens.issued_since(offset)
    assert issued
    assert {e["via"] for e in issued} == {"password"}

    denied = dockerd.ctr(
        "images",
        "push",
        "--plain-http",
        "--user",
        f"carl:{PASSWORD}",
        f"{addr}/dora/x:v1",
        ref,
        check=False,
    )
    assert denied.returncode != 0

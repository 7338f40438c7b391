"""Keyless CI end to end: a pipeline's ID token (from a local issuer) with skopeo, docker and httpx.

The token server process trusts a local HTTPS OIDC issuer shaped like
GitHub Actions'; our registry trusts the token server. No password or CI
secret exists anywhere: the ID token is the login.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.images import sha256_digest, write_docker_archive, write_oci_layout
from tests.support.oidc import OIDCIssuer
from tests.support.peers import Dockerd, Skopeo, short_tempdir
from tests.support.podman import Podman
from tests.support.registry_proxy import RegistryProxy
from tests.support.tokenserver import TokenServer

pytestmark = pytest.mark.e2e

TRUST = "gha-team-app"
AUDIENCE = "https://registry.example"


@dataclass
class Stack:
    issuer: OIDCIssuer
    tokens: TokenServer
    registry: RegistryProxy

    def id_token(self, **claims: str) -> str:
        claims.setdefault("repository", "team/app")
        return self.issuer.sign(self.issuer.github_actions(AUDIENCE, **claims))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("keyless")
    trust = {
        "name": TRUST,
        "issuer": None,  # filled below, once the issuer has its port
        "audience": AUDIENCE,
        "scopes": ["repository:team/app:pull,push"],
        "claims": {"repository": "team/app", "ref": "refs/heads/main"},
    }
    with OIDCIssuer(work / "oidc") as issuer:
        trust |= {"issuer": issuer.url, "ca_file": str(issuer.ca_file)}
        with (
            TokenServer(work / "ts", extra={"federation": [trust]}) as tokens,
            RegistryProxy(work / "registry", tokens.registry_auth()) as registry,
        ):
            yield Stack(issuer, tokens, registry)


def test_skopeo_pushes_with_an_id_token_where_its_trust_allows(
    stack: Stack, tmp_path: Path
) -> None:
    skopeo = Skopeo(tmp_path)
    addr = stack.registry.addr
    token = stack.id_token()
    creds = f"{TRUST}:{token}"
    image = write_oci_layout(tmp_path / "src", tag="v1", layers=2, seed="keyless")
    offset = len(stack.tokens.log_text())
    skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", creds,
        f"oci:{tmp_path / 'src'}:v1", f"docker://{addr}/team/app:v1",
    )  # fmt: skip
    raw = skopeo(
        "inspect", "--raw", "--tls-verify=false", "--creds", creds, f"docker://{addr}/team/app:v1"
    ).stdout
    assert raw.encode() == image.manifest

    refused = skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", creds,
        f"oci:{tmp_path / 'src'}:v1", f"docker://{addr}/team/other:v1", check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "denied" in refused.stderr.lower() or "unauthorized" in refused.stderr.lower()

    # A token of the same issuer for another branch is no login at all.
    feature = stack.id_token(ref="refs/heads/feature")
    wrong = skopeo(
        "inspect", "--raw", "--tls-verify=false", "--creds", f"{TRUST}:{feature}",
        f"docker://{addr}/team/app:v1", check=False,
    )  # fmt: skip
    assert wrong.returncode != 0

    issued = stack.tokens.issued_since(offset)
    assert issued and {e["kind"] for e in issued} == {"federated"}
    assert {e["account"] for e in issued} == {f"{TRUST}:repo:team/app:ref:refs/heads/main"}
    assert not any("team/other" in str(e["granted"]) for e in issued)
    log = stack.tokens.log_text()
    assert token.split(".")[2] not in log and feature.split(".")[2] not in log


def test_docker_logs_in_pushes_and_pulls_with_an_id_token(
    stack: Stack, dockerd: Dockerd, tmp_path: Path
) -> None:
    addr = stack.registry.addr
    token = stack.id_token()
    dockerd.docker("login", addr, "-u", TRUST, "--password-stdin", input=token)
    auth = dockerd.config_json()["auths"][addr]
    assert "identitytoken" not in auth, "no refresh token for a federated login"

    image = f"{addr}/team/app:docker"
    archive = write_docker_archive(tmp_path / "img.tar", repo_tag=image, seed="keyless-docker")
    dockerd.docker("load", "-i", str(archive.path))
    offset = len(stack.tokens.log_text())
    dockerd.docker("push", image)
    dockerd.docker("rmi", image)
    dockerd.docker("pull", image)
    inspected = json.loads(dockerd.docker("image", "inspect", image).stdout)
    assert inspected[0]["Id"] == archive.config_digest
    issued = stack.tokens.issued_since(offset)
    assert issued and {e["kind"] for e in issued} == {"federated"}
    assert any("repository:team/app:pull,push" in str(e["granted"]) for e in issued)
    dockerd.docker("logout", addr)
    dockerd.docker("rmi", image)


def test_an_exchanged_token_is_accepted_by_the_registry(stack: Stack) -> None:
    got = httpx.post(
        f"{stack.tokens.url}/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": stack.id_token(),
            "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
            "service": stack.tokens.service,
            "scope": "repository:team/app:pull,push repository:team/other:pull",
        },
        timeout=10,
    )
    assert got.status_code == 200, got.text
    assert got.json()["scope"] == "repository:team/app:pull,push"
    bearer = {"Authorization": f"Bearer {got.json()['access_token']}"}
    base = stack.registry.url
    blob = b"pushed with an exchanged token"
    digest = sha256_digest(blob)
    pushed = httpx.post(
        f"{base}/v2/team/app/blobs/uploads/",
        params={"digest": digest},
        content=blob,
        headers=bearer | {"Content-Type": "application/octet-stream"},
        timeout=10,
    )
    assert pushed.status_code == 201, pushed.text
    head = httpx.head(f"{base}/v2/team/app/blobs/{digest}", headers=bearer, timeout=10)
    assert head.status_code == 200 and head.headers["docker-content-digest"] == digest
    other = httpx.get(f"{base}/v2/team/other/tags/list", headers=bearer, timeout=10)
    assert other.status_code == 401
    assert 'scope="repository:team/other:pull"' in other.headers["www-authenticate"]


def test_podman_logs_in_and_pushes_with_an_id_token(stack: Stack, tmp_path: Path) -> None:
    addr = stack.registry.addr
    workdir = short_tempdir("pm-keyless")
    try:
        podman = Podman(workdir)
        podman.login(addr, TRUST, stack.id_token())
        image = write_oci_layout(tmp_path / "img", tag="v1", seed="keyless-podman")
        podman("pull", f"oci:{tmp_path / 'img'}:v1")
        local_id = podman("images", "-q", "--no-trunc").stdout.split()[0]
        podman("tag", local_id, f"{addr}/team/app:podman")
        podman("push", "--tls-verify=false", f"{addr}/team/app:podman")
        podman("tag", local_id, f"{addr}/team/other:podman")
        refused = podman("push", "--tls-verify=false", f"{addr}/team/other:podman", check=False)
        assert refused.returncode != 0
        podman("rmi", "-a", "-f")
        podman("pull", "--tls-verify=false", f"{addr}/team/app:podman")
        assert podman("images", "-q", "--no-trunc").stdout.split() == [image.config_digest]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

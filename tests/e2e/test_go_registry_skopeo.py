"""The real Go registry accepts our tokens; skopeo drives it as a user would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest

from tests.support.images import write_oci_layout
from tests.support.peers import GoRegistry, Skopeo
from tests.support.tokenserver import TokenServer
from tokenserver.passwords import hash_password

pytestmark = pytest.mark.e2e

USERS = {"alice": "alice-pw-1", "hana": "hana-pw-1"}


@dataclass
class Stack:
    tokens: TokenServer
    registry: GoRegistry


def registry_for(tokens: TokenServer, root: Path) -> GoRegistry:
    return GoRegistry(
        root,
        token=tokens.registry_auth(),
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("stack")
    htpasswd = work / "htpasswd"
    htpasswd.write_text(f"hana:{hash_password(USERS['hana'], rounds=6)}\n")
    with TokenServer(work / "ts", htpasswd=htpasswd) as tokens:
        tokens.add_user("alice", USERS["alice"])
        with registry_for(tokens, work / "registry") as registry:
            yield Stack(tokens, registry)


@pytest.mark.parametrize("user", ["alice", "hana"], ids=["database-user", "htpasswd-user"])
def test_skopeo_push_pull_list_delete(stack: Stack, tmp_path: Path, user: str) -> None:
    skopeo = Skopeo(tmp_path)
    creds = f"{user}:{USERS[user]}"
    image = write_oci_layout(tmp_path / "src", tag="v1", layers=3, seed=user)
    ref = f"docker://{stack.registry.addr}/{user}/app:v1"

    skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", creds, f"oci:{tmp_path / 'src'}:v1", ref
    )

    raw = skopeo("inspect", "--raw", "--tls-verify=false", "--creds", creds, ref).stdout
    assert raw.encode() == image.manifest

    skopeo(
        "copy", "--src-tls-verify=false", "--src-creds", creds, ref, f"oci:{tmp_path / 'dst'}:v1"
    )
    index = json.loads((tmp_path / "dst" / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [image.manifest_digest]
    for digest in image.layer_digests:
        assert (tmp_path / "dst" / "blobs" / "sha256" / digest.split(":")[1]).exists()

    tags = skopeo(
        "list-tags",
        "--tls-verify=false",
        "--creds",
        creds,
        f"docker://{stack.registry.addr}/{user}/app",
    )
    assert json.loads(tags.stdout)["Tags"] == ["v1"]

    skopeo("delete", "--tls-verify=false", "--creds", creds, ref)
    gone = skopeo("inspect", "--raw", "--tls-verify=false", "--creds", creds, ref, check=False)
    assert gone.returncode != 0
    assert "manifest unknown" in gone.stderr.lower()


def test_push_outside_own_namespace_is_refused_by_the_registry(
    stack: Stack, tmp_path: Path
) -> None:
    skopeo = Skopeo(tmp_path)
    write_oci_layout(tmp_path / "src", tag="v1", seed="intruder")
    result = skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        f"alice:{USERS['alice']}",
        f"oci:{tmp_path / 'src'}:v1",
        f"docker://{stack.registry.addr}/bob/app:v1",
        check=False,
    )
    assert result.returncode != 0
    assert "requested access to the resource is denied" in result.stderr

    # The token endpoint itself did not fail: 200 with an empty grant.
    answer = httpx.get(
        f"{stack.tokens.url}/token",
        params={"service": "registry", "scope": "repository:bob/app:pull,push", "account": "alice"},
        auth=("alice", USERS["alice"]),
    )
    assert answer.status_code == 200
    claims = jwt.decode(answer.json()["token"], options={"verify_signature": False})
    assert claims["access"] == []


def _pull_with_token(tokens: TokenServer, registry: GoRegistry, name: str) -> httpx.Response:
    answer = httpx.get(
        f"{tokens.url}/token",
        params={"service": "registry", "scope": f"repository:{name}:pull"},
        auth=("alice", USERS["alice"]),
    )
    assert answer.status_code == 200
    token = answer.json()["token"]
    return httpx.get(
        f"{registry.url}/v2/{name}/tags/list", headers={"Authorization": f"Bearer {token}"}
    ), jwt.get_unverified_header(token)


@pytest.mark.parametrize(
    ("algorithm", "x5c"),
    [("ES256", False), ("ES256", True), ("RS256", False), ("RS256", True)],
)
def test_registry_accepts_kid_only_and_x5c_tokens(
    tmp_path: Path, algorithm: str, x5c: bool
) -> None:
    with TokenServer(tmp_path / "ts", algorithm=algorithm, x5c=x5c) as tokens:
        tokens.add_user("alice", USERS["alice"])
        with registry_for(tokens, tmp_path / "registry") as registry:
            response, header = _pull_with_token(tokens, registry, "alice/app")
            assert header["alg"] == algorithm
            assert ("x5c" in header) is x5c
            # Authorized: the repository simply does not exist yet.
            assert response.status_code == 404, response.text
            assert response.json()["errors"][0]["code"] == "NAME_UNKNOWN"

            denied, _ = _pull_with_token(tokens, registry, "bob/app")
            assert denied.status_code == 401
            assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]


def test_registry_rejects_tokens_from_an_untrusted_key(tmp_path: Path) -> None:
    with TokenServer(tmp_path / "trusted") as trusted, TokenServer(tmp_path / "rogue") as rogue:
        rogue.add_user("alice", USERS["alice"])
        with registry_for(trusted, tmp_path / "registry") as registry:
            response, _ = _pull_with_token(rogue, registry, "alice/app")
            assert response.status_code == 401
            assert 'error="invalid_token"' in response.headers["www-authenticate"]

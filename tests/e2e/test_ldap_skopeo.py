"""LDAP users and group rules, end to end: slapd, our token server, the Go registry, skopeo.

Rules: developers may push to `team/*`, ci may only pull `team/*`, everyone
owns `${account}/*`. They live in an `acl_file`, as an operator would keep them.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest
import yaml

from tests.support.images import write_oci_layout
from tests.support.ldap import Slapd
from tests.support.peers import GoRegistry, Skopeo
from tests.support.tokenserver import TokenServer

pytestmark = pytest.mark.e2e


@dataclass
class Stack:
    tokens: TokenServer
    registry: GoRegistry
    dev: tuple[str, str]
    bot: tuple[str, str]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, slapd: Slapd) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("ldap-stack")
    tag = secrets.token_hex(3)
    dev = (f"dev-{tag}", f"dev-pw-{secrets.token_hex(8)}")
    bot = (f"bot-{tag}", f"bot-pw-{secrets.token_hex(8)}")
    for uid, password in (dev, bot):
        slapd.add_user(uid, password)
    developers, ci = f"developers-{tag}", f"ci-{tag}"
    slapd.add_group(developers, [dev[0]])
    slapd.add_group(ci, [bot[0]])
    rules = work / "acl.yaml"
    rules.write_text(
        yaml.safe_dump(
            [
                {"match": {"account": "/.+/", "name": "${account}/*"}, "actions": ["*"]},
                {
                    "match": {"name": "team/*", "labels": {"groups": developers}},
                    "actions": ["pull", "push"],
                    "comment": "developers push team",
                },
                {
                    "match": {"name": "team/*", "labels": {"groups": ci}},
                    "actions": ["pull"],
                    "comment": "ci pulls team",
                },
            ]
        )
    )
    ldap = {
        "url": slapd.url,
        "start_tls": True,
        "ca_file": str(slapd.ca_file),
        "bind_dn": slapd.service_dn,
        "bind_password": slapd.service_password,
        "base_dn": slapd.people_dn,
    }
    extra = {"ldap": ldap, "authn": {"order": ["ldap", "database"]}, "acl_file": str(rules)}
    with (
        TokenServer(work / "ts", extra=extra) as tokens,
        GoRegistry(work / "registry", token=tokens.registry_auth()) as registry,
    ):
        yield Stack(tokens, registry, dev, bot)


def _creds(user: tuple[str, str]) -> str:
    return f"{user[0]}:{user[1]}"


def test_developer_pushes_ci_pulls_and_may_not_push(stack: Stack, tmp_path: Path) -> None:
    skopeo = Skopeo(tmp_path)
    image = write_oci_layout(tmp_path / "src", tag="v1", layers=2, seed="team-app")
    ref = f"docker://{stack.registry.addr}/team/app:v1"

    skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", _creds(stack.dev),
        f"oci:{tmp_path / 'src'}:v1", ref,
    )  # fmt: skip

    skopeo(
        "copy", "--src-tls-verify=false", "--src-creds", _creds(stack.bot),
        ref, f"oci:{tmp_path / 'pulled'}:v1",
    )  # fmt: skip
    index = json.loads((tmp_path / "pulled" / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [image.manifest_digest]

    write_oci_layout(tmp_path / "evil", tag="v2", seed="ci-push")
    refused = skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", _creds(stack.bot),
        f"oci:{tmp_path / 'evil'}:v2", f"docker://{stack.registry.addr}/team/app:v2",
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "denied" in refused.stderr.lower() or "unauthorized" in refused.stderr.lower()

    # The token endpoint answered 200 with the reduced grant, not an error.
    answer = httpx.get(
        f"{stack.tokens.url}/token",
        params={"service": "registry", "scope": "repository:team/app:pull,push"},
        auth=stack.bot,
    )
    assert answer.status_code == 200
    claims = jwt.decode(answer.json()["token"], options={"verify_signature": False})
    assert claims["sub"] == stack.bot[0]
    assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]

    tags = skopeo(
        "list-tags", "--tls-verify=false", "--creds", _creds(stack.bot),
        f"docker://{stack.registry.addr}/team/app",
    )  # fmt: skip
    assert json.loads(tags.stdout)["Tags"] == ["v1"]


def test_everyone_owns_their_namespace(stack: Stack, tmp_path: Path) -> None:
    skopeo = Skopeo(tmp_path)
    write_oci_layout(tmp_path / "src", tag="v1", seed="own")
    bot = stack.bot[0]
    skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", _creds(stack.bot),
        f"oci:{tmp_path / 'src'}:v1", f"docker://{stack.registry.addr}/{bot}/tool:v1",
    )  # fmt: skip
    # ... and only theirs.
    refused = skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", _creds(stack.bot),
        f"oci:{tmp_path / 'src'}:v1", f"docker://{stack.registry.addr}/{stack.dev[0]}/tool:v1",
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0


def test_wrong_ldap_password_is_refused_and_logged_without_it(stack: Stack) -> None:
    wrong = f"wrong-{secrets.token_hex(6)}"
    ok = httpx.get(f"{stack.tokens.url}/token", params={"service": "registry"}, auth=stack.dev)
    assert ok.status_code == 200
    answer = httpx.get(
        f"{stack.tokens.url}/token",
        params={"service": "registry"},
        auth=(stack.dev[0], wrong),
    )
    assert answer.status_code == 401
    log = stack.tokens.log_text()
    for secret in (wrong, stack.dev[1], stack.bot[1]):
        assert secret not in log
    assert '"backend": "ldap"' in log

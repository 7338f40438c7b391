"""Every Go registry, in every way it can trust a signer, accepts our tokens; so does ours.

Registry 2.8 finds the key by `x5c` (else by a libtrust `kid`); registry 3.1
trusts `rootcertbundle` certificates through `x5c` only (its own key ids are
RFC 7638 thumbprints) and a `jwks` file's keys through the `kid` alone,
refusing any token with `x5c` there. So the token server's default tokens
carry both, and `token.x5c: false` serves a registry 3.1 that trusts a JWKS
file alone. skopeo pushes, inspects and pulls through each, byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.support.images import write_oci_layout
from tests.support.peers import GoRegistry, GoRegistryV3, Peer, Skopeo
from tests.support.registry_proxy import RegistryProxy
from tests.support.tokenserver import TokenServer

pytestmark = pytest.mark.e2e

USER, PASSWORD = "alice", "alice-trust-pw-1"


@dataclass
class Signers:
    """Two token servers on one keys directory: the default one, and one with `token.x5c: false`."""

    default: TokenServer
    kid_only: TokenServer
    jwks_file: Path

    def pick(self, x5c: bool) -> TokenServer:
        return self.default if x5c else self.kid_only


@pytest.fixture(scope="module")
def signers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signers]:
    work = tmp_path_factory.mktemp("signers")
    keys = work / "keys"
    with (
        TokenServer(work / "default", keys_dir=keys) as default,
        TokenServer(work / "kid-only", keys_dir=keys, x5c=False) as kid_only,
    ):
        for server in (default, kid_only):
            server.add_user(USER, PASSWORD)
        jwks_file = work / "registry-jwks.json"
        default.cli("keys", "jwks", "--output", str(jwks_file))
        yield Signers(default, kid_only, jwks_file)


def trust_section(tokens: TokenServer, mode: str, jwks_file: Path) -> dict[str, str]:
    section = {"realm": tokens.realm, "service": tokens.service, "issuer": tokens.issuer}
    if mode in ("bundle", "both"):
        section["rootcertbundle"] = str(tokens.cert_bundle)
    if mode in ("jwks", "both"):
        section["jwks"] = str(jwks_file)
    if mode == "jwks-url":
        section["jwks"] = f"{tokens.url}/.well-known/jwks.json"
    return section


def start_registry(kind: str, work: Path, token: dict[str, str]) -> Peer:
    if kind == "2.8":
        return GoRegistry(work, token=token)
    if kind == "3.1":
        return GoRegistryV3(work, token=token)
    return RegistryProxy(work, token)


def registry_url(registry: Peer) -> str:
    url: str = registry.url  # type: ignore[attr-defined]
    return url


def pull_token(tokens: TokenServer, name: str) -> str:
    answer = httpx.get(
        f"{tokens.url}/token",
        params={"service": tokens.service, "scope": f"repository:{name}:pull"},
        auth=(USER, PASSWORD),
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["token"]
    return token


# (registry, trust mode, does the token carry x5c) -> accepted?
TABLE: list[tuple[str, str, bool, bool]] = [
    ("2.8", "bundle", True, True),
    ("2.8", "bundle", False, True),
    ("3.1", "bundle", True, True),
    ("3.1", "bundle", False, False),  # its bundle keys go by RFC 7638 thumbprint
    ("3.1", "jwks", True, False),  # x5c is checked against the bundle roots it lacks
    ("3.1", "jwks", False, True),
    ("3.1", "both", True, True),
    ("3.1", "both", False, True),
    ("ours", "bundle", True, True),
    ("ours", "bundle", False, True),
    ("ours", "jwks", True, True),
    ("ours", "jwks", False, True),
    ("ours", "jwks-url", True, True),
    ("ours", "jwks-url", False, True),
]


@pytest.mark.parametrize(
    ("kind", "mode", "x5c", "accepted"),
    TABLE,
    ids=[f"{k}-{m}-{'x5c' if x else 'kid'}" for k, m, x, _ in TABLE],
)
def test_which_tokens_each_trust_mode_accepts(
    signers: Signers, tmp_path: Path, kind: str, mode: str, x5c: bool, accepted: bool
) -> None:
    """The README's table, measured: what each registry makes of each kind of token."""
    tokens = signers.pick(x5c)
    token = pull_token(tokens, f"{USER}/app")
    header = jwt.get_unverified_header(token)
    assert ("x5c" in header) is x5c
    assert header["kid"] in {k["kid"] for k in json.loads(signers.jwks_file.read_text())["keys"]}
    section = trust_section(tokens, mode, signers.jwks_file)
    with start_registry(kind, tmp_path / "registry", section) as registry:
        answer = httpx.get(
            f"{registry_url(registry)}/v2/{USER}/app/tags/list",
            headers={"Authorization": f"Bearer {token}"},
        )
    if accepted:
        # Authorized; the repository just does not exist yet.
        assert answer.status_code == 404, answer.text
        assert answer.json()["errors"][0]["code"] == "NAME_UNKNOWN"
    else:
        assert answer.status_code == 401, answer.text
        assert 'error="invalid_token"' in answer.headers["www-authenticate"]


def layout_blobs(layout: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (layout / "blobs" / "sha256").iterdir()}


# What a user configures: the token server's default, except for a registry 3.1 that
# trusts a JWKS file alone, which needs `token.x5c: false`.
CONFIGURED: list[tuple[str, str, bool]] = [
    ("2.8", "bundle", True),
    ("3.1", "bundle", True),
    ("3.1", "jwks", False),
    ("3.1", "both", True),
    ("ours", "bundle", True),
    ("ours", "jwks", True),
    ("ours", "jwks", False),
]


@pytest.mark.parametrize(
    ("kind", "mode", "x5c"),
    CONFIGURED,
    ids=[f"{k}-{m}-{'default' if x else 'x5c-off'}" for k, m, x in CONFIGURED],
)
def test_skopeo_push_inspect_pull_through_each_trust_mode(
    signers: Signers, tmp_path: Path, kind: str, mode: str, x5c: bool
) -> None:
    tokens = signers.pick(x5c)
    skopeo = Skopeo(tmp_path)
    creds = f"{USER}:{PASSWORD}"
    seed = f"{kind}-{mode}-{x5c}"
    image = write_oci_layout(tmp_path / "src", tag="v1", layers=2, seed=seed)
    section = trust_section(tokens, mode, signers.jwks_file)
    with start_registry(kind, tmp_path / "registry", section) as registry:
        addr = registry_url(registry).removeprefix("http://")
        ref = f"docker://{addr}/{USER}/app:v1"
        skopeo(
            "copy", "--dest-tls-verify=false", "--dest-creds", creds,
            f"oci:{tmp_path / 'src'}:v1", ref,
        )  # fmt: skip
        raw = skopeo("inspect", "--raw", "--tls-verify=false", "--creds", creds, ref).stdout
        assert raw.encode() == image.manifest
        skopeo(
            "copy", "--src-tls-verify=false", "--src-creds", creds,
            ref, f"oci:{tmp_path / 'dst'}:v1",
        )  # fmt: skip
        log = registry.log_tail()
    assert layout_blobs(tmp_path / "dst") == layout_blobs(tmp_path / "src"), log


def test_a_new_key_is_trusted_before_it_signs(signers: Signers, tmp_path: Path) -> None:
    """Rotation as the README tells it: the registry learns the new key first.

    `keys generate` puts the new certificate in `bundle.pem` (and `keys jwks`
    in the JWKS file) at once; the token server signs with it only from its
    next start. A registry restarted on the new files in between accepts the
    tokens of both keys.
    """
    work = tmp_path / "rotating"
    keys = work / "keys"
    jwks_file = work / "jwks.json"
    with TokenServer(work / "old", keys_dir=keys) as old:
        old.add_user(USER, PASSWORD)
        old_token = pull_token(old, f"{USER}/app")
        old.cli("keys", "generate")
        old.cli("keys", "jwks", "--output", str(jwks_file))
        section: dict[str, Any] = trust_section(old, "both", jwks_file)
        with start_registry("3.1", tmp_path / "registry", section) as registry:
            with TokenServer(work / "new", keys_dir=keys) as new:
                new.add_user(USER, PASSWORD)
                new_token = pull_token(new, f"{USER}/app")
            assert (
                jwt.get_unverified_header(new_token)["kid"]
                != (jwt.get_unverified_header(old_token)["kid"])
            )
            for token in (old_token, new_token):
                # Both signers share the issuer and service; only the realm differs.
                answer = httpx.get(
                    f"{registry_url(registry)}/v2/{USER}/app/tags/list",
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert answer.status_code == 404, answer.text

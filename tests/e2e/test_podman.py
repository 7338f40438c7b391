"""podman logs in, pushes, pulls and searches through the Go registry with our tokens."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.images import write_oci_layout
from tests.support.peers import GoRegistry, short_tempdir
from tests.support.podman import Podman
from tests.support.tokenserver import TokenServer

pytestmark = pytest.mark.e2e

PASSWORD = "pia-pw-1"
ADMIN_PASSWORD = "root-pw-1"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TokenServer, GoRegistry]]:
    work = tmp_path_factory.mktemp("podman-stack")
    with TokenServer(work / "ts") as tokens:
        tokens.add_user("pia", PASSWORD)
        tokens.add_user("root", ADMIN_PASSWORD, "admin")
        registry = GoRegistry(
            work / "registry",
            token=tokens.registry_auth(),
        )
        with registry:
            yield tokens, registry


@pytest.fixture
def podman() -> Iterator[Podman]:
    # podman refuses a run root longer than 50 characters.
    workdir = short_tempdir("pm")
    try:
        yield Podman(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_podman_login_push_pull_search(
    stack: tuple[TokenServer, GoRegistry], podman: Podman, tmp_path: Path
) -> None:
    _, registry = stack
    image = write_oci_layout(tmp_path / "img", tag="v1", seed="pia")
    ref = f"{registry.addr}/pia/app:v1"

    assert podman.login(registry.addr, "pia", "nope", check=False).returncode != 0
    podman.login(registry.addr, "pia", PASSWORD)

    podman("pull", f"oci:{tmp_path / 'img'}:v1")
    local_id = podman("images", "-q", "--no-trunc").stdout.split()[0]
    assert local_id == image.config_digest
    podman("tag", local_id, ref)
    podman("push", "--tls-verify=false", ref)
    podman("rmi", "-a", "-f")
    podman("pull", "--tls-verify=false", ref)
    assert podman("images", "-q", "--no-trunc").stdout.split() == [image.config_digest]

    # Searching needs registry:catalog:*, which only admins get.
    denied = podman("search", "--tls-verify=false", f"{registry.addr}/pia", check=False)
    assert "pia/app" not in denied.stdout
    podman("logout", registry.addr)
    podman.login(registry.addr, "root", ADMIN_PASSWORD)
    found = podman("search", "--tls-verify=false", "--format", "{{.Name}}", f"{registry.addr}/pia")
    assert f"{registry.addr}/pia/app" in found.stdout.split()

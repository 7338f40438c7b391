"""Each real peer starts, answers and works with hand-built images, without token auth."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization

from tests.support.certs import self_signed
from tests.support.images import (
    OCI_MANIFEST,
    REF_NAME_ANNOTATION,
    sha256_digest,
    write_docker_archive,
    write_oci_layout,
)
from tests.support.peers import (
    Dockerd,
    GoRegistry,
    PeerStartError,
    Postgres,
    Skopeo,
    require_binary,
)

pytestmark = pytest.mark.e2e


def self_signed_ec_cert_pem(common_name: str = "test-token-signer") -> bytes:
    cert, _ = self_signed(common_name)
    return cert.public_bytes(serialization.Encoding.PEM)


def oci_index_manifests(layout_dir: Path) -> dict[str, str]:
    """Tag -> manifest digest of an OCI layout's index.json."""
    index = json.loads((layout_dir / "index.json").read_text())
    return {m["annotations"][REF_NAME_ANNOTATION]: m["digest"] for m in index["manifests"]}


def test_oci_layout_is_consistent(tmp_path: Path) -> None:
    info = write_oci_layout(tmp_path, tag="v1", layers=3, seed="consistent")
    blobs = tmp_path / "blobs" / "sha256"

    manifest = json.loads((blobs / info.manifest_digest.removeprefix("sha256:")).read_bytes())
    assert manifest["mediaType"] == OCI_MANIFEST
    assert [layer["digest"] for layer in manifest["layers"]] == info.layer_digests
    assert len(set(info.layer_digests)) == 3
    assert json.loads(info.config)["rootfs"]["diff_ids"] == info.diff_ids
    assert oci_index_manifests(tmp_path) == {"v1": info.manifest_digest}
    for blob in blobs.iterdir():
        assert sha256_digest(blob.read_bytes()) == "sha256:" + blob.name
    assert write_oci_layout(tmp_path / "again", seed="consistent", layers=3) == info


def test_go_registry_round_trip_with_skopeo(
    go_registry: GoRegistry, skopeo: Skopeo, tmp_path: Path
) -> None:
    info = write_oci_layout(tmp_path / "src", tag="v1", seed="skopeo")
    ref = f"docker://{go_registry.addr}/smoke/app:v1"

    skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'src'}:v1", ref)

    tags = json.loads(skopeo("list-tags", "--tls-verify=false", ref.rsplit(":", 1)[0]).stdout)
    assert tags["Tags"] == ["v1"]
    raw = skopeo("inspect", "--raw", "--tls-verify=false", ref).stdout
    assert raw.encode() == info.manifest

    skopeo("copy", "--src-tls-verify=false", ref, f"oci:{tmp_path / 'dst'}:copied")
    assert oci_index_manifests(tmp_path / "dst") == {"copied": info.manifest_digest}

    skopeo("delete", "--tls-verify=false", ref)
    gone = skopeo("inspect", "--raw", "--tls-verify=false", ref, check=False)
    assert gone.returncode != 0
    assert "manifest unknown" in gone.stderr


def test_go_registry_with_token_auth_challenges(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(self_signed_ec_cert_pem())
    token = {
        "realm": "http://127.0.0.1:1/token",
        "service": "registry",
        "issuer": "test",
        "rootcertbundle": str(bundle),
    }

    with GoRegistry(tmp_path / "registry", token=token) as registry:
        response = httpx.get(f"{registry.url}/v2/", trust_env=False)

    assert response.status_code == 401
    assert (
        response.headers["WWW-Authenticate"]
        == 'Bearer realm="http://127.0.0.1:1/token",service="registry"'
    )


def test_peer_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    incomplete_token = {"realm": "http://127.0.0.1:1/token"}

    with pytest.raises(PeerStartError, match="docker-registry exited") as excinfo:
        GoRegistry(tmp_path / "registry", token=incomplete_token).start()

    assert "token auth requires" in str(excinfo.value)


def test_require_binary_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    assert require_binary("skopeo") == "/usr/bin/skopeo"
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        require_binary("/nonexistent/peer")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        require_binary("no-such-peer-binary")


def test_docker_load_push_pull(dockerd: Dockerd, go_registry: GoRegistry, tmp_path: Path) -> None:
    image = f"{go_registry.addr}/smoke/docker:v1"
    archive = write_docker_archive(tmp_path / "image.tar", repo_tag=image, seed="docker")

    assert f"Loaded image: {image}" in dockerd.docker("load", "-i", archive.path).stdout
    assert image_id(dockerd, image) == archive.config_digest

    dockerd.docker("push", image)
    dockerd.docker("rmi", image)
    assert dockerd.docker("image", "inspect", image, check=False).returncode != 0

    dockerd.docker("pull", image)
    assert image_id(dockerd, image) == archive.config_digest
    dockerd.docker("rmi", image)


def image_id(dockerd: Dockerd, image: str) -> str:
    return dockerd.docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()


def test_ctr_import_push_pull(dockerd: Dockerd, go_registry: GoRegistry, tmp_path: Path) -> None:
    local = "example.test/smoke/ctr-local:v1"
    remote = f"{go_registry.addr}/smoke/ctr:v1"
    archive = write_docker_archive(tmp_path / "image.tar", repo_tag=local, seed="ctr")

    dockerd.ctr("images", "import", "--platform", "linux/amd64", archive.path)
    assert local in ctr_image_refs(dockerd)

    dockerd.ctr("images", "push", "--plain-http", remote, local)
    dockerd.ctr("images", "rm", local)
    assert local not in ctr_image_refs(dockerd)

    dockerd.ctr("images", "pull", "--plain-http", remote)
    assert remote in ctr_image_refs(dockerd)
    config = dockerd.ctr("content", "get", archive.config_digest).stdout
    assert json.loads(config) == json.loads(archive.config)
    dockerd.ctr("images", "rm", remote)


def ctr_image_refs(dockerd: Dockerd) -> set[str]:
    return set(dockerd.ctr("images", "ls", "--quiet").stdout.split())


def test_postgres_through_sqlalchemy(postgres: Postgres) -> None:
    engine = sa.create_engine(postgres.url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE smoke (id serial PRIMARY KEY, name text)"))
            conn.execute(sa.text("INSERT INTO smoke (name) VALUES ('alice'), ('bob')"))
        with engine.connect() as conn:
            names = conn.execute(sa.text("SELECT name FROM smoke ORDER BY id")).scalars().all()
        assert names == ["alice", "bob"]
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS smoke"))
        engine.dispose()

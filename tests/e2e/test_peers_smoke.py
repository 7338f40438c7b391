"""Each real peer starts, answers and works with hand-built images, without token auth."""

from __future__ import annotations

import json
import secrets
import ssl
import time
from pathlib import Path

import httpx
import ldap3
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from ldap3.core.exceptions import (
    LDAPBindError,
    LDAPInvalidCredentialsResult,
    LDAPSocketOpenError,
    LDAPSocketReceiveError,
)
from ldap3.utils.conv import escape_filter_chars

from tests.support.certs import self_signed
from tests.support.images import (
    OCI_MANIFEST,
    REF_NAME_ANNOTATION,
    sha256_digest,
    write_docker_archive,
    write_oci_layout,
)
from tests.support.ldap import EMPTY_GROUP_MEMBER, SilentServer, Slapd
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


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def ldap_bind(
    url: str,
    dn: str | None,
    password: str | None,
    *,
    tls: ldap3.Tls | None = None,
    start_tls: bool = False,
    receive_timeout: float = 5,
) -> ldap3.Connection:
    server = ldap3.Server(url, tls=tls, get_info=ldap3.NONE, connect_timeout=5)
    return ldap3.Connection(
        server,
        user=dn,
        password=password,
        auto_bind=ldap3.AUTO_BIND_TLS_BEFORE_BIND if start_tls else ldap3.AUTO_BIND_NO_TLS,
        raise_exceptions=True,
        receive_timeout=receive_timeout,
    )


def search_user(conn: ldap3.Connection, slapd: Slapd, uid: str) -> list[dict[str, list[str]]]:
    conn.search(
        slapd.people_dn,
        f"(&(objectClass=inetOrgPerson)(uid={escape_filter_chars(uid)}))",
        attributes=["uid", "memberOf", "userPassword"],
    )
    return [dict(entry["attributes"]) for entry in conn.response]


def group_members(slapd: Slapd, conn: ldap3.Connection, group_dn: str) -> list[str]:
    conn.search(group_dn, "(objectClass=groupOfNames)", ldap3.BASE, attributes=["member"])
    return list(conn.entries[0].member.values)


def test_slapd_service_account_sees_member_of(slapd: Slapd) -> None:
    uid, password = unique("jörg*(x)\\y"), unique("pw")
    group = unique("smoke (devs)*")
    user_dn = slapd.add_user(uid, password)
    group_dn = slapd.add_group(group, [uid])
    service = ldap_bind(slapd.url, slapd.service_dn, slapd.service_password)

    (user,) = search_user(service, slapd, uid)
    assert user["uid"] == [uid]
    assert user["memberOf"] == [group_dn]
    assert user["userPassword"] == []
    ldap_bind(slapd.url, user_dn, password).unbind()

    slapd.remove_member(group, uid)
    assert search_user(service, slapd, uid)[0]["memberOf"] == []
    assert group_members(slapd, service, group_dn) == [EMPTY_GROUP_MEMBER]
    slapd.add_member(group, uid)
    assert search_user(service, slapd, uid)[0]["memberOf"] == [group_dn]

    slapd.set_password(uid, "changed")
    ldap_bind(slapd.url, user_dn, "changed").unbind()
    slapd.delete_user(uid)
    assert search_user(service, slapd, uid) == []
    assert group_members(slapd, service, group_dn) == [EMPTY_GROUP_MEMBER]


def test_slapd_refuses_anonymous_search_and_wrong_passwords(slapd: Slapd) -> None:
    uid, other = unique("alice"), unique("bob")
    user_dn = slapd.add_user(uid, "right")
    slapd.add_user(other, "other")

    anonymous = ldap_bind(slapd.url, None, None)
    anonymous.raise_exceptions = False
    assert not anonymous.search(slapd.base_dn, "(uid=*)")
    assert anonymous.result["description"] == "unwillingToPerform"
    assert anonymous.entries == []
    with pytest.raises((LDAPBindError, LDAPInvalidCredentialsResult)):
        ldap_bind(slapd.url, user_dn, "wrong")
    with pytest.raises((LDAPBindError, LDAPInvalidCredentialsResult)):
        ldap_bind(slapd.url, slapd.service_dn, "wrong")

    user = ldap_bind(slapd.url, user_dn, "right")
    assert search_user(user, slapd, other) == []
    (own,) = search_user(user, slapd, uid)
    assert own["userPassword"] == []


def test_slapd_ldaps_and_starttls_verify_against_ca_file(slapd: Slapd) -> None:
    assert slapd.ldaps_url is not None
    assert slapd.ca_file is not None
    tls = ldap3.Tls(ca_certs_file=str(slapd.ca_file), validate=ssl.CERT_REQUIRED)
    expected = f"dn:{slapd.service_dn}"

    ldaps = ldap_bind(slapd.ldaps_url, slapd.service_dn, slapd.service_password, tls=tls)
    assert ldaps.extend.standard.who_am_i() == expected
    start_tls = ldap_bind(
        slapd.url, slapd.service_dn, slapd.service_password, tls=tls, start_tls=True
    )
    assert start_tls.tls_started
    assert start_tls.extend.standard.who_am_i() == expected

    untrusted = ldap3.Tls(validate=ssl.CERT_REQUIRED)
    with pytest.raises(LDAPSocketOpenError):
        ldap_bind(slapd.ldaps_url, slapd.service_dn, slapd.service_password, tls=untrusted)


def test_paused_slapd_and_silent_server_time_out(slapd: Slapd) -> None:
    with slapd.paused():
        started = time.monotonic()
        with pytest.raises(LDAPSocketReceiveError):
            ldap_bind(slapd.url, slapd.service_dn, slapd.service_password, receive_timeout=1)
        assert time.monotonic() - started < 5
    ldap_bind(slapd.url, slapd.service_dn, slapd.service_password).unbind()

    with SilentServer() as silent:
        started = time.monotonic()
        with pytest.raises(LDAPSocketReceiveError):
            ldap_bind(silent.url, slapd.service_dn, slapd.service_password, receive_timeout=1)
        assert time.monotonic() - started < 5
        assert len(silent.connections) == 1

"""Real clients against our registry service, with tokens from our token server.

No Go registry here: skopeo, podman, docker, buildah, containerd's ctr and
python-dxf (over HTTPS) push to and pull from `registry_proxy`.
"""

from __future__ import annotations

import gc
import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dxf import DXF

from tests.support.certs import write_self_signed
from tests.support.images import (
    sha256_digest,
    write_docker_archive,
    write_oci_index_layout,
    write_oci_layout,
)
from tests.support.peers import Dockerd, Skopeo, short_tempdir
from tests.support.podman import Buildah, Podman
from tests.support.registry_proxy import RegistryProxy
from tests.support.tokenserver import TokenServer
from tokenserver.passwords import hash_password

pytestmark = pytest.mark.e2e

USERS = {
    "sky": "sky-pw-1",
    "pia": "pia-pw-1",
    "dora": "dora-pw-1",
    "bea": "bea-pw-1",
    "carl": "carl-pw-1",
    "xena": "xena-pw-1",
}
ADMIN = ("root", "root-pw-1")
# Users in the token server's database; the others come from an htpasswd file,
# which costs no CLI process per user.
DATABASE_USERS = ("pia", "dora")


@dataclass
class Stack:
    tokens: TokenServer
    registry: RegistryProxy


def write_htpasswd(path: Path, users: list[str]) -> Path:
    path.write_text("".join(f"{u}:{hash_password(USERS[u], rounds=6)}\n" for u in users))
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("proxy-clients")
    htpasswd = write_htpasswd(work / "htpasswd", [u for u in USERS if u not in DATABASE_USERS])
    with TokenServer(work / "ts", htpasswd=htpasswd) as tokens:
        accounts = [(u, USERS[u]) for u in DATABASE_USERS] + [(*ADMIN, "admin")]
        with ThreadPoolExecutor(len(accounts)) as pool:
            list(pool.map(lambda account: tokens.add_user(*account), accounts))
        with RegistryProxy(work / "registry", tokens.registry_auth()) as registry:
            yield Stack(tokens, registry)


def creds(user: str) -> str:
    return f"{user}:{USERS[user]}"


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def access_log(registry: RegistryProxy, since: int = 0) -> list[dict[str, Any]]:
    """registry_proxy's access-log entries written after byte offset `since`."""
    return [e for e in json_lines(registry.log_text()[since:]) if e.get("msg") == "request"]


def blob_path(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


# --- skopeo -------------------------------------------------------------------------------


def test_skopeo_copy_inspect_list_tags_delete(stack: Stack, tmp_path: Path) -> None:
    skopeo = Skopeo(tmp_path)
    addr = stack.registry.addr
    image = write_oci_layout(tmp_path / "src", tag="v1", layers=3, seed="sky-app")
    repo = f"docker://{addr}/sky/app"
    auth = ("--tls-verify=false", "--creds", creds("sky"))

    for tag in ("v1", "v2"):
        skopeo(
            "copy", "--dest-tls-verify=false", "--dest-creds", creds("sky"),
            f"oci:{tmp_path / 'src'}:v1", f"{repo}:{tag}",
        )  # fmt: skip

    raw = skopeo("inspect", "--raw", *auth, f"{repo}:v1").stdout
    assert raw.encode() == image.manifest

    inspected = json.loads(skopeo("inspect", *auth, f"{repo}:v1").stdout)
    assert inspected["Digest"] == image.manifest_digest
    assert inspected["Layers"] == image.layer_digests
    assert inspected["Architecture"] == "amd64"
    assert inspected["Os"] == "linux"
    assert "SEED=sky-app" in inspected["Env"]
    assert sorted(inspected["RepoTags"]) == ["v1", "v2"]

    dst = tmp_path / "dst"
    skopeo(
        "copy", "--src-tls-verify=false", "--src-creds", creds("sky"),
        f"{repo}:v1", f"oci:{dst}:v1",
    )  # fmt: skip
    index = json.loads((dst / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [image.manifest_digest]
    assert blob_path(dst, image.manifest_digest).read_bytes() == image.manifest
    assert blob_path(dst, image.config_digest).read_bytes() == image.config
    for digest in image.layer_digests:
        assert (
            blob_path(dst, digest).read_bytes() == blob_path(tmp_path / "src", digest).read_bytes()
        )

    tags = json.loads(skopeo("list-tags", *auth, repo).stdout)
    assert tags["Tags"] == ["v1", "v2"]

    # Deleting by tag deletes the manifest, hence every tag pointing at it.
    skopeo("delete", *auth, f"{repo}:v1")
    for tag in ("v1", "v2"):
        gone = skopeo("inspect", "--raw", *auth, f"{repo}:{tag}", check=False)
        assert gone.returncode != 0
        assert "manifest unknown" in gone.stderr.lower()
    by_digest = skopeo("inspect", "--raw", *auth, f"{repo}@{image.manifest_digest}", check=False)
    assert "manifest unknown" in by_digest.stderr.lower()


def test_skopeo_copy_all_of_an_image_index(stack: Stack, tmp_path: Path) -> None:
    skopeo = Skopeo(tmp_path)
    addr = stack.registry.addr
    src = tmp_path / "src"
    index = write_oci_index_layout(src, tag="v1", seed="sky-multi")
    amd64, arm64 = index.images["linux/amd64"], index.images["linux/arm64"]
    ref = f"docker://{addr}/sky/multi:v1"
    auth = ("--tls-verify=false", "--creds", creds("sky"))

    skopeo(
        "copy", "--all", "--dest-tls-verify=false", "--dest-creds", creds("sky"),
        f"oci:{src}:v1", ref,
    )  # fmt: skip

    assert skopeo("inspect", "--raw", *auth, ref).stdout.encode() == index.index
    for image in (amd64, arm64):
        by_digest = f"docker://{addr}/sky/multi@{image.manifest_digest}"
        assert skopeo("inspect", "--raw", *auth, by_digest).stdout.encode() == image.manifest

    # Not raw: skopeo picks the platform's instance out of the index.
    for arch, image in (("amd64", amd64), ("arm64", arm64)):
        picked = json.loads(
            skopeo("inspect", "--override-arch", arch, "--override-os", "linux", *auth, ref).stdout
        )
        assert picked["Architecture"] == arch
        assert picked["Layers"] == image.layer_digests

    dst = tmp_path / "dst"
    skopeo(
        "copy", "--all", "--src-tls-verify=false", "--src-creds", creds("sky"),
        ref, f"oci:{dst}:v1",
    )  # fmt: skip
    pulled = json.loads((dst / "index.json").read_text())
    assert [m["digest"] for m in pulled["manifests"]] == [index.index_digest]
    assert blob_path(dst, index.index_digest).read_bytes() == index.index
    for image in (amd64, arm64):
        for digest in (image.manifest_digest, image.config_digest, *image.layer_digests):
            assert blob_path(dst, digest).read_bytes() == blob_path(src, digest).read_bytes()


# --- podman and buildah -------------------------------------------------------------------


@pytest.fixture
def podman() -> Iterator[Podman]:
    workdir = short_tempdir("pm")
    try:
        yield Podman(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def buildah() -> Iterator[Buildah]:
    workdir = short_tempdir("bh")
    try:
        yield Buildah(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_podman_login_push_pull_search(stack: Stack, podman: Podman, tmp_path: Path) -> None:
    addr = stack.registry.addr
    image = write_oci_layout(tmp_path / "img", tag="v1", seed="pia-app")
    ref = f"{addr}/pia/app:v1"

    refused = podman.login(addr, "pia", "nope", check=False)
    assert refused.returncode != 0
    assert "invalid username/password" in refused.stderr, refused.stderr
    podman.login(addr, "pia", USERS["pia"])

    podman("pull", f"oci:{tmp_path / 'img'}:v1")
    local_id = podman("images", "-q", "--no-trunc").stdout.split()[0]
    assert local_id == image.config_digest
    podman("tag", local_id, ref)
    podman("push", "--tls-verify=false", ref)
    podman("rmi", "-a", "-f")
    assert podman("images", "-q").stdout.split() == []
    podman("pull", "--tls-verify=false", ref)
    assert podman("images", "-q", "--no-trunc").stdout.split() == [image.config_digest]

    # Searching reads the catalog, which needs registry:catalog:*: admins only.
    offset = len(stack.registry.log_text())
    denied = podman(
        "search", "--tls-verify=false", "--format", "{{.Name}}", f"{addr}/pia", check=False
    )
    assert f"{addr}/pia/app" not in denied.stdout.split()
    catalog = [e for e in access_log(stack.registry, offset) if e["path"] == "/v2/_catalog"]
    assert catalog, "podman search asked the catalog"
    assert {e["status"] for e in catalog} == {401}

    podman("logout", addr)
    podman.login(addr, *ADMIN)
    found = podman("search", "--tls-verify=false", "--format", "{{.Name}}", f"{addr}/pia")
    assert f"{addr}/pia/app" in found.stdout.split()


def test_buildah_login_push_pull(stack: Stack, buildah: Buildah, tmp_path: Path) -> None:
    addr = stack.registry.addr
    image = write_oci_layout(tmp_path / "img", tag="v1", seed="bea-app")
    ref = f"{addr}/bea/app:v1"

    refused = buildah.login(addr, "bea", "nope", check=False)
    assert refused.returncode != 0
    assert "invalid username/password" in refused.stderr, refused.stderr
    buildah.login(addr, "bea", USERS["bea"])

    buildah("pull", f"oci:{tmp_path / 'img'}:v1")
    local_id = buildah("images", "-q", "--no-trunc").stdout.split()[0]
    assert local_id == image.config_digest
    offset = len(stack.registry.log_text())
    buildah("push", "--tls-verify=false", local_id, f"docker://{ref}")
    pushed = access_log(stack.registry, offset)
    assert any(
        e["method"] == "PUT" and e["path"] == "/v2/bea/app/manifests/v1" and e["status"] == 201
        for e in pushed
    )

    buildah("rmi", "-a", "-f")
    assert buildah("images", "-q").stdout.split() == []
    buildah("pull", "--tls-verify=false", ref)
    assert buildah("images", "-q", "--no-trunc").stdout.split() == [image.config_digest]

    # Another user's namespace stays closed, through the same login.
    denied = buildah(
        "push", "--tls-verify=false", local_id, f"docker://{addr}/pia/bea:v1", check=False
    )
    assert denied.returncode != 0
    assert "requested access to the resource is denied" in denied.stderr, denied.stderr


# --- docker and containerd ----------------------------------------------------------------


def test_docker_login_load_push_rmi_pull(stack: Stack, dockerd: Dockerd, tmp_path: Path) -> None:
    addr = stack.registry.addr
    image = f"{addr}/dora/app:v1"
    dockerd.docker("login", addr, "-u", "dora", "--password-stdin", input=USERS["dora"])
    auth = dockerd.config_json()["auths"][addr]
    assert auth.get("identitytoken", "").startswith("rt_"), "docker stored our refresh token"

    archive = write_docker_archive(tmp_path / "img.tar", repo_tag=image, seed="dora-app")
    dockerd.docker("load", "-i", str(archive.path))

    offset = len(stack.tokens.log_text())
    dockerd.docker("push", image)
    dockerd.docker("rmi", image)
    assert dockerd.docker("images", "-q", image).stdout.split() == []
    dockerd.docker("pull", image)
    inspected = json.loads(dockerd.docker("image", "inspect", image).stdout)
    assert inspected[0]["Id"] == archive.config_digest

    issued = stack.tokens.issued_since(offset)
    assert issued, "push and pull asked for tokens"
    assert {e["via"] for e in issued} == {"refresh_token"}
    assert any("repository:dora/app:pull,push" in e["granted"] for e in issued)


def test_docker_push_to_a_second_repository_mounts_blobs(
    stack: Stack, dockerd: Dockerd, tmp_path: Path
) -> None:
    addr = stack.registry.addr
    one, two = f"{addr}/dora/one:v1", f"{addr}/dora/two:v1"
    dockerd.docker("login", addr, "-u", "dora", "--password-stdin", input=USERS["dora"])
    archive = write_docker_archive(tmp_path / "img.tar", repo_tag=one, layers=3, seed="dora-mnt")
    dockerd.docker("load", "-i", str(archive.path))
    dockerd.docker("push", one)

    dockerd.docker("tag", one, two)
    offset = len(stack.registry.log_text())
    token_offset = len(stack.tokens.log_text())
    pushed = dockerd.docker("push", two)
    assert "Mounted from dora/one" in pushed.stdout

    # A mount needs pull on the source too: one token carried both repositories.
    assert any(
        {"repository:dora/two:pull,push", "repository:dora/one:pull"} <= set(e["granted"])
        for e in stack.tokens.issued_since(token_offset)
    )

    posts = [
        e
        for e in access_log(stack.registry, offset)
        if e["method"] == "POST" and e["path"] == "/v2/dora/two/blobs/uploads/"
    ]
    mounted = [e for e in posts if e["status"] == 201]
    # Each of the three layers is mounted; only the config may be uploaded anew.
    assert len(mounted) == len(archive.diff_ids), posts

    dockerd.docker("rmi", one, two)
    dockerd.docker("pull", two)
    inspected = json.loads(dockerd.docker("image", "inspect", two).stdout)
    assert inspected[0]["Id"] == archive.config_digest


def _ctr_image_digest(dockerd: Dockerd, ref: str) -> str:
    for line in dockerd.ctr("images", "ls").stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == ref:
            return next(f for f in fields if f.startswith("sha256:"))
    raise AssertionError(f"{ref} not in ctr images ls")


def test_ctr_import_push_rm_pull(stack: Stack, dockerd: Dockerd, tmp_path: Path) -> None:
    addr = stack.registry.addr
    ref = f"{addr}/carl/tool:v1"
    user = ("--plain-http", "--user", creds("carl"))
    archive = write_docker_archive(tmp_path / "ctr.tar", repo_tag=ref, seed="carl-tool")
    dockerd.ctr("images", "import", "--platform", "linux/amd64", str(archive.path))
    digest = _ctr_image_digest(dockerd, ref)

    offset = len(stack.tokens.log_text())
    dockerd.ctr("images", "push", *user, ref)
    dockerd.ctr("images", "rm", ref)
    assert ref not in dockerd.ctr("images", "ls", "-q").stdout.split()
    dockerd.ctr("images", "pull", *user, ref)
    assert _ctr_image_digest(dockerd, ref) == digest

    issued = stack.tokens.issued_since(offset)
    assert issued
    assert {e["via"] for e in issued} == {"password"}

    denied = dockerd.ctr("images", "push", *user, f"{addr}/dora/x:v1", ref, check=False)
    assert denied.returncode != 0
    assert "insufficient_scope" in denied.stderr, denied.stderr


# --- python-dxf over HTTPS ----------------------------------------------------------------


def test_python_dxf_over_https(tmp_path: Path) -> None:
    cert, key = write_self_signed(tmp_path)
    htpasswd = write_htpasswd(tmp_path / "htpasswd", ["xena"])
    with TokenServer(tmp_path / "ts", tls=(cert, key), htpasswd=htpasswd) as tokens:
        with RegistryProxy(tmp_path / "registry", tokens.registry_auth(), tls=(cert, key)) as reg:
            assert reg.url.startswith("https://") and tokens.realm.startswith("https://")

            def auth(dxf: DXF, response: Any) -> None:
                dxf.authenticate("xena", USERS["xena"], response=response)

            data = b"python-dxf over https\n" * 1000
            # Within `with`, python-dxf keeps one requests session and closes it at the end.
            with DXF(reg.addr, "xena/blobs", auth, tlsverify=str(cert)) as dxf:
                # An iterator (a list would be form-encoded by requests) is sent chunked.
                chunks = iter([data[:5000], data[5000:]])
                digest = dxf.push_blob(data=chunks, digest=sha256_digest(data))
                assert digest == sha256_digest(data)
                dxf.set_alias("v1", digest)
                dxf.set_alias("v2", digest)

                assert b"".join(dxf.pull_blob(digest)) == data
                assert dxf.blob_size(digest) == len(data)
                assert dxf.get_alias("v1") == [digest]
                assert sorted(dxf.list_aliases()) == ["v1", "v2"]
            # pull_blob's streamed response sits in a reference cycle that holds its
            # keep-alive connection open; over TLS an idle connection delays the
            # server's graceful stop by 30 s, so collect it before stopping.
            gc.collect()

            assert any(
                e["method"] == "PUT"
                and e["path"] == "/v2/xena/blobs/manifests/v1"
                and e["status"] == 201
                for e in access_log(reg)
            )
        issued = tokens.issued_since(0)
        assert issued
        assert all(e["account"] == "xena" for e in issued)
        assert any("repository:xena/blobs:pull,push" in e["granted"] for e in issued)

"""Our registry in front of another: the Go registry 2.8 (Debian's) as the upstream, with
htpasswd Basic auth, and skopeo pulling through ours with tokens of our token server.

What is pulled through arrives byte-identical; what was pulled once is served from our
storage (with the upstream stopped, too); a tag is believed for the upstream's `ttl`; what
the upstream alters in flight is refused and not stored; one upstream fetch serves many
concurrent pulls; our access rules apply to the names under the prefix; nothing is pushed
there.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.exec_helper import HelperScript
from tests.support.images import write_oci_index_layout, write_oci_layout
from tests.support.peers import Dockerd, GoRegistry, Skopeo, short_tempdir
from tests.support.podman import Podman
from tests.support.registry_client import TokenAuth
from tests.support.registry_proxy import RegistryProxy
from tests.support.tokenserver import TokenServer
from tokenserver.passwords import hash_password

pytestmark = pytest.mark.e2e

ROOT = ("root", "root-pw-1")  # an admin of our token server: may pull anything
SKY = ("sky", "sky-pw-1")  # owns sky/* only
UPSTREAM_USER = ("puller", "upstream-pw-1")


@dataclass
class Upstream:
    registry: GoRegistry
    skopeo: Skopeo

    def push(self, layout: Path, ref: str, *, all_images: bool = False) -> None:
        self.skopeo(
            "copy", *(["--all"] if all_images else []), "--dest-tls-verify=false",
            "--dest-creds", ":".join(UPSTREAM_USER), f"oci:{layout}:v1",
            f"docker://{self.registry.addr}/{ref}",
        )  # fmt: skip

    def access(self) -> list[str]:
        """The request lines the upstream served (its access log), in order."""
        lines = []
        for line in self.registry.log_text().splitlines():
            if '"http.request.uri"' in line or "http.request.uri=" in line:
                lines.append(line)
        return lines

    def blob_file(self, digest: str) -> Path:
        hex_ = digest.removeprefix("sha256:")
        return self.registry.storage_dir / f"docker/registry/v2/blobs/sha256/{hex_[:2]}/{hex_}/data"


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    with TokenServer(tmp_path_factory.mktemp("pt-tokens")) as server:
        server.add_user(*ROOT, "admin")
        server.add_user(*SKY)
        yield server


@contextmanager
def upstream_registry(work: Path) -> Iterator[Upstream]:
    htpasswd = work / "htpasswd"
    htpasswd.parent.mkdir(parents=True, exist_ok=True)
    htpasswd.write_text(f"{UPSTREAM_USER[0]}:{hash_password(UPSTREAM_USER[1], rounds=6)}\n")
    auth = {"auth": {"htpasswd": {"realm": "upstream", "path": str(htpasswd)}}}
    with GoRegistry(work / "go", extra=auth, log_level="debug") as registry:
        yield Upstream(registry, Skopeo(work))


def _upstreams(upstream: Upstream, **more: Any) -> list[dict[str, Any]]:
    return [
        {
            "prefix": "up",
            "url": upstream.registry.url,
            "username": UPSTREAM_USER[0],
            "password": UPSTREAM_USER[1],
            **more,
        }
    ]


@contextmanager
def ours(
    work: Path, tokens: TokenServer, upstreams: list[dict[str, Any]]
) -> Iterator[RegistryProxy]:
    with RegistryProxy(
        work / "ours", tokens.registry_auth(), extra={"upstreams": upstreams}
    ) as reg:
        yield reg


@contextmanager
def pulling_through(
    tmp_path: Path, tokens: TokenServer, **settings: Any
) -> Iterator[tuple[Upstream, RegistryProxy, Skopeo]]:
    """An upstream, ours in front of it with these upstream settings, and skopeo."""
    with (
        upstream_registry(tmp_path / "up") as upstream,
        ours(tmp_path, tokens, _upstreams(upstream, **settings)) as registry,
    ):
        yield upstream, registry, Skopeo(tmp_path)


def _copy_out(skopeo: Skopeo, ref: str, dst: Path, *options: str, check: bool = True) -> Any:
    """skopeo copy from ours (as root) into an OCI layout."""
    return skopeo(
        "copy", "--src-tls-verify=false", "--src-creds", _creds(ROOT), *options,
        ref, f"oci:{dst}:v1", check=check,
    )  # fmt: skip


def pulled_sha256(url: str, auth: httpx.Auth) -> str:
    """The SHA-256 (hex) of what a GET of `url` streams, once it answered 200."""
    with httpx.Client(auth=auth, timeout=300, trust_env=False) as client:
        digest = hashlib.sha256()
        with client.stream("GET", url) as answer:
            assert answer.status_code == 200, answer.read()
            for piece in answer.iter_raw():
                digest.update(piece)
        return digest.hexdigest()


def _creds(who: tuple[str, str]) -> str:
    return ":".join(who)


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def _stored_blobs(registry: RegistryProxy) -> set[str]:
    root = registry.root / "docker/registry/v2/blobs/sha256"
    return {f"sha256:{p.parent.name}" for p in root.glob("*/*/data")} if root.exists() else set()


def _stored_soon(registry: RegistryProxy, digests: set[str]) -> None:
    """A fetch is committed to storage just after its first client has the last byte."""
    deadline = time.monotonic() + 10
    while not digests <= _stored_blobs(registry) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert digests <= _stored_blobs(registry)


def _inspect(skopeo: Skopeo, ref: str, who: tuple[str, str] = ROOT, **kw: Any) -> Any:
    return skopeo("inspect", "--raw", "--tls-verify=false", "--creds", _creds(who), ref, **kw)


def test_images_pull_through_byte_identical_and_are_served_from_our_storage_after(
    tmp_path: Path, tokens: TokenServer
) -> None:
    with pulling_through(tmp_path, tokens, ttl="1h") as (upstream, registry, skopeo):
        src = tmp_path / "src"
        image = write_oci_layout(src, tag="v1", layers=3, seed="pull-through")
        upstream.push(src, "team/app:v1")
        ref = f"docker://{registry.addr}/up/team/app"

        dst = tmp_path / "dst"
        _copy_out(skopeo, f"{ref}:v1", dst)
        index = json.loads((dst / "index.json").read_text())
        assert [m["digest"] for m in index["manifests"]] == [image.manifest_digest]
        assert _blob(dst, image.manifest_digest) == image.manifest
        for digest in [image.config_digest, *image.layer_digests]:
            assert _blob(dst, digest) == _blob(src, digest)
        assert set(image.layer_digests) <= _stored_blobs(registry)

        # Our tag list and catalog show what is cached here.
        auth = ("--tls-verify=false", "--creds", _creds(ROOT))
        assert json.loads(skopeo("list-tags", *auth, ref).stdout)["Tags"] == ["v1"]

        # Served from our storage: the upstream is not asked again for digests.
        upstream.registry.stop()
        again = tmp_path / "again"
        _copy_out(skopeo, f"{ref}:v1", again)
        assert _blob(again, image.manifest_digest) == image.manifest
        # Never cached: the upstream's absence is the answer, in the OCI envelope.
        missing = _inspect(skopeo, f"{ref}:never", check=False, timeout=60)
        assert missing.returncode != 0
        assert "unavailable" in missing.stderr.lower(), missing.stderr


def test_only_the_platforms_pulled_are_fetched(tmp_path: Path, tokens: TokenServer) -> None:
    with pulling_through(tmp_path, tokens) as (upstream, registry, skopeo):
        src = tmp_path / "src"
        index = write_oci_index_layout(src, tag="v1", seed="pt-multi")
        upstream.push(src, "team/multi:v1", all_images=True)
        ref = f"docker://{registry.addr}/up/team/multi:v1"
        assert _inspect(skopeo, ref).stdout.encode() == index.index
        arm64 = index.images["linux/arm64"]
        dst = tmp_path / "dst"
        _copy_out(skopeo, ref, dst, "--override-arch", "arm64", "--override-os", "linux")
        stored = _stored_blobs(registry)
        assert set(arm64.layer_digests) <= stored
        assert not set(index.images["linux/amd64"].layer_digests) & stored


def test_our_access_rules_apply_and_nothing_is_pushed_there(
    tmp_path: Path, tokens: TokenServer
) -> None:
    with pulling_through(tmp_path, tokens, repositories=["team/*"]) as (upstream, registry, skopeo):
        src = tmp_path / "src"
        write_oci_layout(src, tag="v1", layers=1, seed="pt-rules")
        upstream.push(src, "team/app:v1")
        upstream.push(src, "other/app:v1")
        ref = f"docker://{registry.addr}/up/team/app:v1"
        refused = _inspect(skopeo, ref, SKY, check=False)
        assert refused.returncode != 0 and "denied" in refused.stderr.lower(), refused.stderr
        # Outside `repositories`: unknown here, whatever the upstream holds.
        outside = _inspect(skopeo, f"docker://{registry.addr}/up/other/app:v1", check=False)
        assert outside.returncode != 0 and "unknown" in outside.stderr.lower(), outside.stderr
        pushed = skopeo(
            "copy", "--dest-tls-verify=false", "--dest-creds", _creds(ROOT),
            f"oci:{src}:v1", f"docker://{registry.addr}/up/team/mine:v1", check=False,
        )  # fmt: skip
        assert pushed.returncode != 0
        assert "unsupported" in pushed.stderr.lower() or "405" in pushed.stderr, pushed.stderr
        # Local repositories beside the upstream work as before.
        skopeo(
            "copy", "--dest-tls-verify=false", "--dest-creds", _creds(SKY),
            f"oci:{src}:v1", f"docker://{registry.addr}/sky/app:v1",
        )  # fmt: skip


def test_a_tag_moved_upstream_is_seen_after_ttl_and_not_before(
    tmp_path: Path, tokens: TokenServer
) -> None:
    with pulling_through(tmp_path, tokens, ttl="6s") as (upstream, registry, skopeo):
        first = write_oci_layout(tmp_path / "one", tag="v1", layers=1, seed="pt-one")
        second = write_oci_layout(tmp_path / "two", tag="v1", layers=1, seed="pt-two")
        upstream.push(tmp_path / "one", "team/app:v1")
        ref = f"docker://{registry.addr}/up/team/app:v1"
        assert _inspect(skopeo, ref).stdout.encode() == first.manifest
        pulled_at = time.monotonic()
        upstream.push(tmp_path / "two", "team/app:v1")
        seen = _inspect(skopeo, ref).stdout.encode()
        if time.monotonic() - pulled_at < 6:
            assert seen == first.manifest  # believed for ttl
        time.sleep(max(0.0, 6.5 - (time.monotonic() - pulled_at)))
        assert _inspect(skopeo, ref).stdout.encode() == second.manifest
        # The upstream gone, the tag (past its ttl again) is served as cached, marked stale.
        upstream.registry.stop()
        time.sleep(6.5)
        assert _inspect(skopeo, ref).stdout.encode() == second.manifest


def test_cached_content_expires_by_ttl_gc_removes_it_and_the_next_pull_fetches_it_again(
    tmp_path: Path, tokens: TokenServer
) -> None:
    with pulling_through(tmp_path, tokens, ttl="2s") as (upstream, registry, skopeo):
        src = tmp_path / "src"
        image = write_oci_layout(src, tag="v1", layers=2, seed="pt-expiry")
        upstream.push(src, "team/app:v1")
        local = write_oci_layout(tmp_path / "local", tag="v1", layers=1, seed="pt-expiry-mine")
        skopeo(
            "copy", "--dest-tls-verify=false", "--dest-creds", _creds(SKY),
            f"oci:{tmp_path / 'local'}:v1", f"docker://{registry.addr}/sky/app:v1",
        )  # fmt: skip
        ref = f"docker://{registry.addr}/up/team/app:v1"
        _copy_out(skopeo, ref, tmp_path / "dst")
        cached = {image.manifest_digest, image.config_digest, *image.layer_digests}
        _stored_soon(registry, cached)

        time.sleep(2.5)
        done = registry.gc()
        assert done.returncode == 0, done.stderr
        assert "unlinked 1 manifests and 3 layers of upstream content expired" in done.stdout
        stored = _stored_blobs(registry)
        assert not cached & stored
        assert {local.manifest_digest, local.config_digest, *local.layer_digests} <= stored

        again = tmp_path / "again"
        _copy_out(skopeo, ref, again)
        assert _blob(again, image.manifest_digest) == image.manifest
        for digest in [image.config_digest, *image.layer_digests]:
            assert _blob(again, digest) == _blob(src, digest)
        # Fetched from the upstream again, not found somewhere here.
        layer = image.layer_digests[0]
        gets = [
            line
            for line in upstream.access()
            if f"/blobs/{layer}" in line
            and "GET" in line
            and ("status=200" in line or '"http.response.status":200' in line)
        ]
        assert len(gets) == 2, gets
        _stored_soon(registry, cached)


def test_bytes_altered_upstream_are_refused_and_not_stored(
    tmp_path: Path, tokens: TokenServer
) -> None:
    with pulling_through(tmp_path, tokens) as (upstream, registry, skopeo):
        src = tmp_path / "src"
        image = write_oci_layout(src, tag="v1", layers=1, seed="pt-tamper")
        upstream.push(src, "team/app:v1")
        layer = image.layer_digests[0]
        data = upstream.blob_file(layer)
        original = data.read_bytes()
        data.write_bytes(bytes(b ^ 0xFF for b in original))  # same length, other bytes
        dst = tmp_path / "dst"
        copied = _copy_out(skopeo, f"docker://{registry.addr}/up/team/app:v1", dst, check=False)
        assert copied.returncode != 0
        assert layer not in _stored_blobs(registry)
        # A manifest too, of an image not pulled before, altered at the upstream.
        other = write_oci_layout(tmp_path / "other", tag="v1", layers=1, seed="pt-tamper-2")
        upstream.push(tmp_path / "other", "team/other:v1")
        manifest_file = upstream.blob_file(other.manifest_digest)
        body = manifest_file.read_bytes()
        manifest_file.write_bytes(body.replace(b'"schemaVersion":2', b'"schemaVersion":2 '))
        assert manifest_file.read_bytes() != body
        by_digest = f"docker://{registry.addr}/up/team/other@{other.manifest_digest}"
        refused = _inspect(skopeo, by_digest, check=False)
        assert refused.returncode != 0
        assert other.manifest_digest not in _stored_blobs(registry)
        data.write_bytes(original)
        manifest_file.write_bytes(body)


def test_concurrent_pulls_of_a_missing_blob_fetch_it_once(
    tmp_path: Path, tokens: TokenServer
) -> None:
    with pulling_through(tmp_path, tokens) as (upstream, registry, _skopeo):
        src = tmp_path / "src"
        image = write_oci_layout(src, tag="v1", layers=1, seed="pt-many", layer_bytes=200 << 20)
        upstream.push(src, "team/big:v1")
        layer = image.layer_digests[0]
        expected = hashlib.sha256(_blob(src, layer)).hexdigest()
        url = f"{registry.url}/v2/up/team/big/blobs/{layer}"
        auth = TokenAuth(*ROOT)

        with ThreadPoolExecutor(20) as pool:
            assert set(pool.map(lambda _: pulled_sha256(url, auth), range(20))) == {expected}
        fetched = [
            line for line in upstream.access() if f"/blobs/{layer}" in line and "GET" in line
        ]
        # The Go registry logs each request it served (a 401 challenge first, then the
        # authenticated one): one authenticated GET is one fetch.
        assert (
            len(
                [
                    line
                    for line in fetched
                    if "status=200" in line or '"http.response.status":200' in line
                ]
            )
            == 1
        ), fetched


def test_a_gateway_stores_nothing(tmp_path: Path, tokens: TokenServer) -> None:
    with pulling_through(tmp_path, tokens, cache=False) as (upstream, registry, skopeo):
        src = tmp_path / "src"
        image = write_oci_layout(src, tag="v1", layers=2, seed="pt-gateway")
        upstream.push(src, "team/app:v1")
        dst = tmp_path / "dst"
        _copy_out(skopeo, f"docker://{registry.addr}/up/team/app:v1", dst)
        for digest in image.layer_digests:
            assert _blob(dst, digest) == _blob(src, digest)
        assert _stored_blobs(registry) == set()


# --- credentials from a docker credential helper (exec) -----------------------------------


def _helper(work: Path) -> HelperScript:
    """A helper answering the upstream's htpasswd user, as a secret store would."""
    helper = HelperScript(work / "helper")
    helper.behave(username=UPSTREAM_USER[0], secret=UPSTREAM_USER[1])
    return helper


def test_images_pull_through_with_credentials_from_a_helper(
    tmp_path: Path, tokens: TokenServer
) -> None:
    helper = _helper(tmp_path)
    exec_ = {"command": helper.command("--profile", "upstream"), "lifetime": "1h"}
    with upstream_registry(tmp_path / "up") as upstream:
        section = {"prefix": "up", "url": upstream.registry.url, "exec": exec_}
        with ours(tmp_path, tokens, [section]) as registry:
            src = tmp_path / "src"
            image = write_oci_layout(src, tag="v1", layers=3, seed="pt-exec")
            upstream.push(src, "team/app:v1")
            dst = tmp_path / "dst"
            _copy_out(Skopeo(tmp_path), f"docker://{registry.addr}/up/team/app:v1", dst)
            assert _blob(dst, image.manifest_digest) == image.manifest
            for digest in [image.config_digest, *image.layer_digests]:
                assert _blob(dst, digest) == _blob(src, digest)
            runs = helper.runs()
            assert len(runs) == 1  # kept for its lifetime across the whole pull
            assert runs[0]["argv"] == ["--profile", "upstream", "get"]
            assert runs[0]["server"] == upstream.registry.url
            assert UPSTREAM_USER[1] not in registry.log_text()


def test_the_go_registry_proxy_section_with_exec(tmp_path: Path, tokens: TokenServer) -> None:
    helper = _helper(tmp_path)
    with upstream_registry(tmp_path / "up") as upstream:
        proxy = {"remoteurl": upstream.registry.url, "exec": {"command": helper.command()}}
        with RegistryProxy(
            tmp_path / "ours", tokens.registry_auth(), extra={"proxy": proxy}
        ) as registry:
            src = tmp_path / "src"
            image = write_oci_layout(src, tag="v1", layers=2, seed="pt-exec-proxy")
            upstream.push(src, "team/app:v1")
            skopeo = Skopeo(tmp_path)
            # Every name is the upstream's, as itself.
            dst = tmp_path / "dst"
            _copy_out(skopeo, f"docker://{registry.addr}/team/app:v1", dst)
            assert _blob(dst, image.manifest_digest) == image.manifest
            for digest in image.layer_digests:
                assert _blob(dst, digest) == _blob(src, digest)
            assert len(helper.runs()) == 1  # no lifetime: run once
            pushed = skopeo(
                "copy", "--dest-tls-verify=false", "--dest-creds", _creds(ROOT),
                f"oci:{src}:v1", f"docker://{registry.addr}/team/mine:v1", check=False,
            )  # fmt: skip
            assert pushed.returncode != 0
            assert "unsupported" in pushed.stderr.lower() or "405" in pushed.stderr, pushed.stderr
            assert UPSTREAM_USER[1] not in registry.log_text()


# --- docker, podman, and containerd with ours as a mirror ----------------------------------


def test_docker_and_podman_pull_through(
    tmp_path: Path, tokens: TokenServer, dockerd: Dockerd
) -> None:
    with pulling_through(tmp_path, tokens) as (upstream, registry, _skopeo):
        src = tmp_path / "src"
        image = write_oci_layout(src, tag="v1", layers=2, seed="pt-docker")
        upstream.push(src, "team/app:v1")
        ref = f"{registry.addr}/up/team/app:v1"
        dockerd.docker("login", registry.addr, "-u", ROOT[0], "--password-stdin", input=ROOT[1])
        dockerd.docker("pull", ref)
        inspected = json.loads(dockerd.docker("image", "inspect", ref).stdout)[0]
        assert inspected["RepoDigests"] == [f"{registry.addr}/up/team/app@{image.manifest_digest}"]
        dockerd.docker("rmi", ref)
        workdir = short_tempdir("pt-pm")
        try:
            podman = Podman(workdir)
            podman.login(registry.addr, *ROOT)
            podman("pull", "--tls-verify=false", ref)
            assert podman("images", "-q", "--no-trunc").stdout.split() == [image.config_digest]
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def test_containerd_uses_ours_as_a_mirror_of_the_upstream(
    tmp_path: Path, tokens: TokenServer, dockerd: Dockerd
) -> None:
    with pulling_through(tmp_path, tokens) as (upstream, registry, _skopeo):
        src = tmp_path / "src"
        write_oci_layout(src, tag="v1", layers=2, seed="pt-ctr")
        upstream.push(src, "team/tool:v1")
        # containerd is told the upstream's host has a mirror: ours. It asks ours for
        # `/v2/team/tool/...?ns=<upstream host>`, with a token for the name ours keeps it under.
        hosts = tmp_path / "hosts.d"
        (hosts / upstream.registry.addr).mkdir(parents=True)
        (hosts / upstream.registry.addr / "hosts.toml").write_text(
            f'server = "{upstream.registry.url}"\n\n'
            f'[host."{registry.url}"]\n'
            '  capabilities = ["pull", "resolve"]\n'
        )
        ref = f"{upstream.registry.addr}/team/tool:v1"
        offset = len(registry.log_text())
        dockerd.ctr(
            "images", "pull", "--hosts-dir", str(hosts), "--user", _creds(ROOT),
            "--platform", "linux/amd64", ref,
        )  # fmt: skip
        lines = registry.log_text()[offset:].splitlines()
        served = [json.loads(line) for line in lines if line.startswith("{")]
        manifests = [
            e["status"]
            for e in served
            if e.get("msg") == "request"
            and e.get("path", "").startswith("/v2/team/tool/manifests/")
        ]
        # Asked by the name at the upstream (no prefix: only `?ns=` routes it), and served.
        assert 200 in manifests, served
        dockerd.ctr("images", "rm", ref)


def test_upstreams_behind_token_auth_go_registry_and_ours(
    tmp_path: Path, tokens: TokenServer
) -> None:
    """Two upstreams at once: the Go registry 2.8 trusting a second token server of ours
    (the token flow, with a user of that server), and another registry of ours."""
    puller = ("puller", "puller-pw-2")
    with TokenServer(tmp_path / "ts-up") as upstream_tokens:
        upstream_tokens.add_user(*puller, "admin")
        with (
            GoRegistry(tmp_path / "go", token=upstream_tokens.registry_auth()) as go,
            RegistryProxy(tmp_path / "second", tokens.registry_auth()) as second,
        ):
            skopeo = Skopeo(tmp_path)
            one = write_oci_layout(tmp_path / "one", tag="v1", layers=2, seed="pt-token")
            two = write_oci_layout(tmp_path / "two", tag="v1", layers=2, seed="pt-second")
            for layout, target, who in (
                (tmp_path / "one", f"{go.addr}/team/app:v1", puller),
                (tmp_path / "two", f"{second.addr}/team/app:v1", ROOT),
            ):
                skopeo(
                    "copy", "--dest-tls-verify=false", "--dest-creds", _creds(who),
                    f"oci:{layout}:v1", f"docker://{target}",
                )  # fmt: skip
            upstreams = [
                {"prefix": "tok", "url": go.url, "username": puller[0], "password": puller[1]},
                {"prefix": "mine", "url": second.url, "username": ROOT[0], "password": ROOT[1]},
            ]
            with ours(tmp_path / "front", tokens, upstreams) as front:
                for prefix, image, src in (("tok", one, "one"), ("mine", two, "two")):
                    dst = tmp_path / f"out-{prefix}"
                    _copy_out(skopeo, f"docker://{front.addr}/{prefix}/team/app:v1", dst)
                    assert _blob(dst, image.manifest_digest) == image.manifest
                    for digest in image.layer_digests:
                        assert _blob(dst, digest) == _blob(tmp_path / src, digest)
                metrics = httpx.get(f"{front.url}/metrics", timeout=10, trust_env=False).text
    assert 'registry_proxy_misses_total{kind="blob"}' in metrics
    for prefix in ("tok", "mine"):
        pulled = re.search(
            rf'^registry_proxy_pulled_bytes_total\{{upstream="{prefix}"\}} (\S+)$', metrics, re.M
        )
        assert pulled is not None and float(pulled.group(1)) > 0, metrics

"""Several instances behind a real nginx, one of them killed mid-work.

Two token servers over one PostgreSQL and two registries over one Swift
bucket (through its S3 API), all behind nginx as docs/scale.md describes. An instance that
dies with SIGKILL must cost the clients nothing they do not retry: nginx
moves refused connections to the other instance, and what was in flight is
retried by the client.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest

from tests.support.images import write_oci_layout
from tests.support.nginx import Nginx, Site
from tests.support.peers import Postgres, Skopeo
from tests.support.registry_proxy import RegistryProxy
from tests.support.swift import Swift
from tests.support.tokenserver import TokenServer

pytestmark = pytest.mark.e2e

USER, PASSWORD = "hana", "hana-pw-1"
TOKEN_REQUESTS = 2000
MB = 1024 * 1024


@dataclass
class Cluster:
    tokens: list[TokenServer]
    registries: list[RegistryProxy]
    nginx: Nginx
    swift: Swift
    bucket: str

    @property
    def token_url(self) -> str:
        return self.nginx.url("token")

    @property
    def registry_host(self) -> str:
        return self.nginx.url("registry").removeprefix("http://")

    def instance_at(self, upstream: str) -> TokenServer | RegistryProxy:
        for instance in [*self.tokens, *self.registries]:
            if instance.addr == upstream:
                return instance
        raise LookupError(upstream)


@pytest.fixture
def cluster(postgres: Postgres, swift: Swift, tmp_path: Path) -> Iterator[Cluster]:
    keys = tmp_path / "keys"
    extra = {"users": {"bcrypt_cost": 4}}
    database = postgres.new_database(f"ha_{uuid.uuid4().hex[:12]}")
    tokens = [
        TokenServer(tmp_path / f"ts{i}", database_url=database, keys_dir=keys, extra=extra)
        for i in range(2)
    ]
    with contextlib.ExitStack() as running:
        for server in tokens:
            running.enter_context(server)
        tokens[0].add_user(USER, PASSWORD)
        # The balancer's ports are fixed before the registries start: their realm is nginx.
        token_site = Site("token", tuple(t.addr for t in tokens)).with_port()
        auth = {**tokens[0].registry_auth(), "realm": f"http://127.0.0.1:{token_site.port}/token"}
        bucket = swift.new_bucket("ha")
        registries = [
            RegistryProxy(tmp_path / f"reg{i}", auth, s3=swift.s3_config(bucket)) for i in range(2)
        ]
        for registry in registries:
            running.enter_context(registry)
        registry_site = Site("registry", tuple(r.addr for r in registries), sticky=True)
        nginx = Nginx(tmp_path / "nginx", token_site, registry_site)
        running.enter_context(nginx)
        yield Cluster(tokens, registries, nginx, swift, bucket)


def _token(client: httpx.Client, i: int) -> str:
    """One token request, retried as a client would on a failed connection or a 502."""
    for attempt in range(5):
        try:
            answer = client.get(
                "/token",
                params={"service": "registry", "scope": f"repository:{USER}/app{i % 7}:pull"},
                auth=(USER, PASSWORD),
            )
        except httpx.TransportError:
            time.sleep(0.05 * (attempt + 1))
            continue
        if answer.status_code in (502, 503, 504):
            time.sleep(0.05 * (attempt + 1))
            continue
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["token"]
        return token
    raise AssertionError(f"request {i} failed five times")


def test_a_token_server_killed_under_load_loses_no_retried_request(cluster: Cluster) -> None:
    jwks = httpx.get(f"{cluster.token_url}/.well-known/jwks.json").json()
    keys = {k["kid"]: jwt.PyJWK(k).key for k in jwks["keys"]}
    done = 0
    lock = threading.Lock()
    victim_killed = threading.Event()

    def one(i: int) -> str:
        nonlocal done
        token = _token(client, i)
        with lock:
            done += 1
        return token

    with (
        httpx.Client(base_url=cluster.token_url, timeout=30) as client,
        concurrent.futures.ThreadPoolExecutor(8) as pool,
    ):
        futures = [pool.submit(one, i) for i in range(TOKEN_REQUESTS)]
        deadline = time.monotonic() + 120
        while done < TOKEN_REQUESTS // 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        # Kill the instance that answered most recently: it has requests in flight.
        served = [e for e in cluster.nginx.served() if "/token" in str(e["request"])]
        victim = cluster.instance_at(Nginx.answered_by(served[-1]))
        victim.kill()
        victim_killed.set()
        tokens = [f.result(timeout=120) for f in futures]
    assert victim_killed.is_set() and len(tokens) == TOKEN_REQUESTS
    for token in tokens:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, keys[header["kid"]], algorithms=["ES256"], audience="registry")
        assert claims["sub"] == USER
    survivors = {Nginx.answered_by(e) for e in cluster.nginx.served()[-200:]}
    assert survivors == {next(t.addr for t in cluster.tokens if t is not victim)}


def test_a_registry_killed_mid_push_costs_a_retry_not_the_image(
    cluster: Cluster, tmp_path: Path
) -> None:
    source = tmp_path / "image"
    image = write_oci_layout(source, tag="v1", layers=2, layer_bytes=100 * MB, seed="ha")
    skopeo = Skopeo(tmp_path)
    dest = f"docker://{cluster.registry_host}/{USER}/big:v1"
    push = subprocess.Popen(
        [
            skopeo.binary,
            "copy",
            "--retry-times",
            "5",
            "--dest-tls-verify=false",
            "--dest-creds",
            f"{USER}:{PASSWORD}",
            f"oci:{source}:v1",
            dest,
        ],
        env=skopeo.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Wait until a layer is being streamed (its parts arrive in the shared bucket),
        # then kill the instance serving the push: the balancer is sticky.
        deadline = time.monotonic() + 60
        with cluster.swift.client() as store:
            while time.monotonic() < deadline and not store.multipart_uploads(cluster.bucket):
                time.sleep(0.02)
        served = [e for e in cluster.nginx.served() if "/v2/" in str(e["request"])]
        assert served, "the push never reached a registry"
        victim = cluster.instance_at(Nginx.answered_by(served[-1]))
        victim.kill()
        output, _ = push.communicate(timeout=300)
    finally:
        if push.poll() is None:
            push.kill()
    assert push.returncode == 0, output
    # The kill did land mid-request: one request's connection was closed by the balancer.
    assert 444 in [e["status"] for e in cluster.nginx.served()]

    pulled = tmp_path / "pulled"
    skopeo(
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        f"{USER}:{PASSWORD}",
        dest,
        f"oci:{pulled}:v1",
        timeout=300,
    )
    index = json.loads((pulled / "index.json").read_text())
    (manifest_descriptor,) = index["manifests"]
    assert manifest_descriptor["digest"] == image.manifest_digest
    for digest in [*image.layer_digests, image.config_digest]:
        got = (pulled / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
        assert got == (source / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
    # No partial blob was ever stored: every blob's bytes are its digest.
    with cluster.swift.client() as store:
        blobs = [
            k
            for k in store.keys(cluster.bucket, "docker/registry/v2/blobs/")
            if k.endswith("/data")
        ]
        assert len(blobs) >= 4
        for key in blobs:
            expected = key.rsplit("/", 2)[-2]
            assert hashlib.sha256(store.get(cluster.bucket, key)).hexdigest() == expected

"""OpenStack Swift with its S3 API, all in one temp dir on 127.0.0.1: a real object store.

`Swift` starts memcached and the account, container, object and proxy servers
(one process each, `workers = 0`) from configs and rings it writes itself; the
rings are built in one Python process with Swift's own `RingBuilder` (the
system interpreter, where Debian installs Swift). It is ready when every
server answers `/healthcheck`. The S3 endpoint is path-style at `endpoint`,
with tempauth's `test:tester` / `testing` and region `us-east-1`.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import textwrap
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from tests.support.peers import LOOPBACK, Peer, PeerStartError, free_port, require_binary

__all__ = ["ACCESS_KEY", "REGION", "SECRET_KEY", "Swift"]

ACCESS_KEY = "test:tester"
SECRET_KEY = "testing"
REGION = "us-east-1"
SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_KINDS = ("account", "container", "object")
# Ports of the kinds, in the order of SERVER_KINDS, become argv of the ring builder.
_BUILD_RINGS = """
import sys
from swift.common.ring import RingBuilder
swift_dir = sys.argv[1]
for kind, port in zip(("account", "container", "object"), sys.argv[2:]):
    builder = RingBuilder(6, 1, 1)
    builder.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1",
                     "port": int(port), "device": "d1", "weight": 1})
    builder.rebalance()
    builder.save(f"{swift_dir}/{kind}.builder")
    builder.get_ring().save(f"{swift_dir}/{kind}.ring.gz")
"""
PROXY_PIPELINE = (
    "catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl "
    "ratelimit s3api tempauth copy container-quotas account-quotas slo dlo versioned_writes "
    "symlink proxy-logging proxy-server"
)


def _healthy(port: int) -> bool:
    response = httpx.get(f"http://{LOOPBACK}:{port}/healthcheck", timeout=2, trust_env=False)
    return response.status_code == 200


class Memcached(Peer):
    name = "memcached"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.binary = require_binary("memcached")
        self.port = free_port()

    def argv(self) -> list[str]:
        return [self.binary, "-l", LOOPBACK, "-p", str(self.port), "-U", "0", "-u", "root"]

    def ready(self) -> bool:
        with socket.create_connection((LOOPBACK, self.port), timeout=2) as sock:
            sock.sendall(b"version\r\n")
            return sock.recv(64).startswith(b"VERSION")


class SwiftServer(Peer):
    """One of swift-{account,container,object,proxy}-server from its own config file."""

    def __init__(self, workdir: Path, kind: str, port: int) -> None:
        self.name = f"swift-{kind}"
        super().__init__(workdir)
        self.kind = kind
        self.port = port
        self.binary = require_binary(f"swift-{kind}-server")
        self.config_path = self.workdir / f"{kind}-server.conf"

    def argv(self) -> list[str]:
        return [self.binary, str(self.config_path), "-v"]

    def ready(self) -> bool:
        return _healthy(self.port)


class Swift:
    """The whole store; a context manager like the other peers. `stop()` removes its data."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.swift_dir = self.workdir / "etc"
        self.devices = self.workdir / "srv"
        self.memcached = Memcached(self.workdir)
        ports = {kind: free_port() for kind in (*SERVER_KINDS, "proxy")}
        self.servers = [SwiftServer(self.workdir, kind, port) for kind, port in ports.items()]
        self.port = ports["proxy"]
        self.endpoint = f"http://{LOOPBACK}:{self.port}"
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.region = REGION

    # -- configuration -----------------------------------------------------

    def _common(self, port: int) -> str:
        return textwrap.dedent(
            f"""\
            [DEFAULT]
            bind_ip = {LOOPBACK}
            bind_port = {port}
            workers = 0
            swift_dir = {self.swift_dir}
            devices = {self.devices}
            mount_check = false
            user = root
            log_level = INFO
            """
        )

    def _write_configs(self) -> None:
        self.swift_dir.mkdir(parents=True, exist_ok=True)
        (self.devices / "d1").mkdir(parents=True, exist_ok=True)
        (self.swift_dir / "swift.conf").write_text(
            textwrap.dedent(
                f"""\
                [swift-hash]
                swift_hash_path_prefix = {secrets.token_hex(8)}
                swift_hash_path_suffix = {secrets.token_hex(8)}

                [storage-policy:0]
                name = Policy-0
                default = yes
                """
            )
        )
        for server in self.servers:
            if server.kind == "proxy":
                body = self._proxy_config()
            else:
                body = textwrap.dedent(
                    f"""\
                    [pipeline:main]
                    pipeline = healthcheck {server.kind}-server

                    [app:{server.kind}-server]
                    use = egg:swift#{server.kind}

                    [filter:healthcheck]
                    use = egg:swift#healthcheck
                    """
                )
            server.config_path.write_text(self._common(server.port) + "\n" + body)

    def _proxy_config(self) -> str:
        filters = {
            "catch_errors": "",
            "gatekeeper": "",
            "healthcheck": "",
            "proxy-logging": "",
            "cache": f"use = egg:swift#memcache\nmemcache_servers = {LOOPBACK}:{self.memcached.port}",
            "listing_formats": "",
            "bulk": "",
            "tempurl": "",
            "ratelimit": "",
            "s3api": f"location = {REGION}\ns3_acl = false",
            "tempauth": f"user_test_tester = {SECRET_KEY} .admin",
            "copy": "",
            "container-quotas": "",
            "account-quotas": "",
            "slo": "",
            # The default throttles large segmented reads to a crawl.
            "dlo": "rate_limit_segments_per_sec = 0",
            "versioned_writes": "",
            "symlink": "",
        }
        sections = [
            f"[pipeline:main]\npipeline = {PROXY_PIPELINE}\n",
            "[app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n",
        ]
        for name, extra in filters.items():
            use = "" if extra.startswith("use =") else f"use = egg:swift#{name.replace('-', '_')}\n"
            sections.append(f"[filter:{name}]\n{use}{extra}".rstrip() + "\n")
        return "\n".join(sections)

    def _build_rings(self) -> None:
        ports = [str(s.port) for s in self.servers if s.kind != "proxy"]
        result = subprocess.run(
            [require_binary(SYSTEM_PYTHON), "-c", _BUILD_RINGS, str(self.swift_dir), *ports],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise PeerStartError(f"building the Swift rings failed:\n{result.stderr[-4000:]}")

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._write_configs()
            self._build_rings()
            peers: list[Peer] = [self.memcached, *self.servers]
            for peer in peers:
                peer.spawn()
            for peer in peers:
                peer.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for peer in (*reversed(self.servers), self.memcached):
            peer.stop()
        shutil.rmtree(self.devices, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- for tests ---------------------------------------------------------

    def s3_config(self, bucket: str, **extra: Any) -> dict[str, Any]:
        """A registry `storage.s3` section for `bucket` on this store."""
        return {
            "regionendpoint": self.endpoint,
            "region": REGION,
            "bucket": bucket,
            "accesskey": ACCESS_KEY,
            "secretkey": SECRET_KEY,
            "secure": False,
            "forcepathstyle": True,
            **extra,
        }

    def new_bucket(self, prefix: str = "test") -> str:
        """A fresh, empty bucket (created with a plain S3 PUT)."""
        name = f"{prefix}-{uuid.uuid4().hex[:16]}"
        with self.client() as client:
            client.create_bucket(name)
        return name

    def client(self) -> _S3Admin:
        return _S3Admin(self)

    def log_text(self) -> str:
        return "\n".join(p.log_text() for p in (*self.servers, self.memcached))


class _S3Admin:
    """A small synchronous S3 client for fixtures (bucket creation, listing what is stored)."""

    def __init__(self, swift: Swift) -> None:
        import boto3
        from botocore.config import Config as BotoConfig

        self._client: Any = boto3.client(
            "s3",
            endpoint_url=swift.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=BotoConfig(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def create_bucket(self, name: str) -> None:
        self._client.create_bucket(Bucket=name)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        found: list[str] = []
        for page in self._client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix
        ):
            found.extend(item["Key"] for item in page.get("Contents", []))
        return found

    def multipart_uploads(self, bucket: str) -> list[dict[str, Any]]:
        uploads: list[dict[str, Any]] = self._client.list_multipart_uploads(Bucket=bucket).get(
            "Uploads", []
        )
        return uploads

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self._client.put_object(Bucket=bucket, Key=key, Body=body)

    def get(self, bucket: str, key: str) -> bytes:
        data: bytes = self._client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return data

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

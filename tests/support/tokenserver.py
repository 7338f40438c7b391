"""Runs the real token server as a subprocess for end-to-end tests."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from authcore.jsonlog import INTERVAL as LOG_INTERVAL
from tests.support.peers import LOOPBACK, Peer, free_port

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["TokenServer", "resident_bytes"]


def resident_bytes(pid: int) -> int:
    """VmRSS of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class TokenServer(Peer):
    """One token-server process with its own config, keys dir and database.

    Instances may share a keys dir and a database URL (several instances
    behind one registry).
    """

    name = "tokenserver"
    log_settle = 5 * LOG_INTERVAL

    def __init__(
        self,
        workdir: Path,
        *,
        service: str = "registry",
        issuer: str = "tokenserver-test",
        database_url: str | None = None,
        keys_dir: Path | None = None,
        x5c: bool | None = None,
        algorithm: str = "ES256",
        htpasswd: Path | None = None,
        tls: tuple[Path, Path] | None = None,
        extra: dict[str, Any] | None = None,
        host: str = LOOPBACK,
    ) -> None:
        super().__init__(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port(host)
        self.addr = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        self.url = f"{'https' if tls else 'http'}://{self.addr}"
        self.tls = tls
        self.realm = f"{self.url}/token"
        self.service = service
        self.issuer = issuer
        self.keys_dir = keys_dir or workdir / "keys"
        self.log_path = workdir / f"tokenserver-{self.port}.log"
        config: dict[str, Any] = {
            "server": {"addr": self.addr},
            "token": {
                "issuer": issuer,
                "service": service,
                "keys_dir": str(self.keys_dir),
                "algorithm": algorithm,
                # None: the server's own default.
                **({} if x5c is None else {"x5c": x5c}),
            },
            "database": {"url": database_url or f"sqlite:///{workdir / 'tokenserver.db'}"},
            "log": {"level": "info"},
        }
        if tls is not None:
            config["server"]["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
        if htpasswd is not None:
            config["users"] = {"htpasswd": str(htpasswd)}
        for section, values in (extra or {}).items():
            if isinstance(values, dict):
                config.setdefault(section, {}).update(values)
            else:
                config[section] = values  # top-level keys such as `acl`
        self.config_path = workdir / f"tokenserver-{self.port}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        if not any(self.keys_dir.glob("*.key")):
            self.cli("keys", "generate", "--algorithm", algorithm)

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What an httpx client passes as `verify` to trust this server."""
        return ssl.create_default_context(cafile=str(self.tls[0])) if self.tls else True

    @property
    def cert_bundle(self) -> Path:
        return self.keys_dir / "bundle.pem"

    def registry_auth(self) -> dict[str, str]:
        """The `auth.token` section of a registry that trusts this server."""
        return {
            "realm": f"{self.url}/token",
            "service": self.service,
            "issuer": self.issuer,
            "rootcertbundle": str(self.cert_bundle),
        }

    def cli(self, *args: str, input: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "tokenserver", *args, "--config", str(self.config_path)],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            env=self.env(),
            cwd=ROOT,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"tokenserver {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def add_user(self, name: str, password: str, *groups: str) -> None:
        group_args = [arg for g in groups for arg in ("--group", g)]
        self.cli("user", "add", name, "--password-stdin", *group_args, input=password + "\n")

    def env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("TOKENSERVER_")}

    def cwd(self) -> Path:
        return ROOT  # the code under test, whichever checkout the tests run from

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "tokenserver", "serve", "--config", str(self.config_path)]

    def ready(self) -> bool:
        return httpx.get(f"{self.url}/healthz", timeout=1, verify=self.verify).status_code == 200

    @property
    def pid(self) -> int:
        assert self.proc is not None, "start() first"
        return self.proc.pid

    def rss_bytes(self) -> int:
        """The server process's resident memory now."""
        return resident_bytes(self.pid)

    def issued_since(self, offset: int) -> list[dict[str, Any]]:
        """Access lines of the tokens issued (a 200 from /token) after byte `offset` of the log.

        Each carries the request's account, kind, backend, via, requested and granted.
        """
        lines = self.log_text()[offset:].splitlines()
        entries = [json.loads(line) for line in lines if line.startswith("{")]
        return [
            e
            for e in entries
            if e.get("msg") == "request" and e.get("path") == "/token" and e["status"] == 200
        ]

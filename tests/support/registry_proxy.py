"""Runs our registry service as a subprocess for end-to-end tests."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from authcore.jsonlog import INTERVAL as LOG_INTERVAL
from tests.support.peers import Peer, free_port

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["RegistryProxy"]


class RegistryProxy(Peer):
    """One registry_proxy process over a storage root, trusting the given token auth."""

    name = "registry-proxy"
    log_settle = 5 * LOG_INTERVAL

    def __init__(
        self,
        workdir: Path,
        token_auth: dict[str, str],
        *,
        root: Path | None = None,
        delete: bool = True,
        port: int | None = None,
        tls: tuple[Path, Path] | None = None,
        extra: dict[str, Any] | None = None,
        s3: dict[str, Any] | None = None,
    ) -> None:
        """`s3`, a `storage.s3` section, stores in a bucket instead of under `root`."""
        super().__init__(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://{self.addr}"
        self.root = root or workdir / "storage"
        self.log_path = workdir / f"registry-proxy-{self.port}.log"
        config: dict[str, Any] = {
            "version": 0.1,
            "http": {"addr": self.addr},
            "storage": {
                **({"s3": dict(s3)} if s3 is not None else {}),
                **({"filesystem": {"rootdirectory": str(self.root)}} if s3 is None else {}),
                "delete": {"enabled": delete},
            },
            "auth": {"token": dict(token_auth)},
            "log": {"level": "info"},
        }
        if tls is not None:
            config["http"]["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
        for section, values in (extra or {}).items():
            if isinstance(values, dict):
                config.setdefault(section, {}).update(values)
            else:  # a list section (`upstreams`)
                config[section] = values
        self.config_path = workdir / f"registry-proxy-{self.port}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "registry_proxy", *args, "--config", str(self.config_path)]

    def env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}

    def cwd(self) -> Path:
        return ROOT  # the code under test, whichever checkout the tests run from

    def argv(self) -> list[str]:
        return self.command("serve")

    def ready(self) -> bool:
        verify: Any = ssl.create_default_context(cafile=str(self.tls[0])) if self.tls else True
        httpx.get(f"{self.url}/v2/", timeout=1, verify=verify)
        return True  # any answer, 401 included

    @property
    def pid(self) -> int:
        assert self.proc is not None, "start() first"
        return self.proc.pid

    def gc(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command("gc", *args),
            capture_output=True,
            text=True,
            timeout=120,
            env=self.env(),
            cwd=ROOT,
        )

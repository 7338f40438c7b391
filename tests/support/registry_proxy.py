"""Runs our registry service as a subprocess for end-to-end tests."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.peers import free_port

__all__ = ["RegistryProxy"]


class RegistryProxy:
    """One registry_proxy process over a storage root, trusting the given token auth."""

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
    ) -> None:
        self.workdir = workdir
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
                "filesystem": {"rootdirectory": str(self.root)},
                "delete": {"enabled": delete},
            },
            "auth": {"token": dict(token_auth)},
            "log": {"level": "info"},
        }
        if tls is not None:
            config["http"]["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
        for section, values in (extra or {}).items():
            config.setdefault(section, {}).update(values)
        self.config_path = workdir / f"registry-proxy-{self.port}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "registry_proxy", *args, "--config", str(self.config_path)]

    def _env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}

    def start(self) -> RegistryProxy:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command("serve"), stdout=log, stderr=subprocess.STDOUT, env=self._env()
            )
        deadline = time.monotonic() + 30
        verify: Any = ssl.create_default_context(cafile=str(self.tls[0])) if self.tls else True
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry-proxy exited at start:\n{self.log_tail()}")
            try:
                httpx.get(f"{self.url}/v2/", timeout=1, verify=verify)
                return self
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"registry-proxy did not start:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    @property
    def pid(self) -> int:
        assert self.proc is not None, "start() first"
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()
            proc.wait()

    def gc(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command("gc", *args), capture_output=True, text=True, timeout=120, env=self._env()
        )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self) -> RegistryProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

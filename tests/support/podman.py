"""podman and buildah with private image storage and a private auth file."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.peers import checked, env_without, require_binary, run

__all__ = ["Buildah", "Podman"]


class Podman:
    """podman with private image storage and auth file.

    podman and buildah refuse a run root longer than 50 characters: give them a
    `short_tempdir` as `workdir`.
    """

    binary_name = "podman"

    def __init__(self, workdir: Path) -> None:
        self.binary = require_binary(self.binary_name)
        self.workdir = workdir
        self.auth_file = workdir / "auth.json"
        self.auth_file.write_text("{}")

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = env_without(prefixes=("REGISTRY_",))
        env["REGISTRY_AUTH_FILE"] = str(self.auth_file)
        cmd = [
            self.binary,
            "--root", str(self.workdir / "root"),
            "--runroot", str(self.workdir / "run"),
            "--storage-driver", "vfs",
            *args,
        ]  # fmt: skip
        result = run(cmd, input=input, env=env)
        return checked(result) if check else result

    def login(
        self, addr: str, user: str, password: str, *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        # Options before the address: buildah takes no option after a positional argument.
        return self(
            "login", "--tls-verify=false", "-u", user, "--password-stdin", addr,
            input=password, check=check,
        )  # fmt: skip


class Buildah(Podman):
    """buildah with private image storage and auth file (same global options as podman)."""

    binary_name = "buildah"

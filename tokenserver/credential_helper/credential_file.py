"""The helper's file of credentials: `$XDG_CONFIG_HOME/tokenserver/credentials.json`, mode 0600.

A write goes to a private temporary file renamed over the old one, so a
reader sees the old file or the new one, never half of either, and the
secret is never readable by others, not even for a moment.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MAX_FILE_BYTES", "CorruptFile", "Credential", "CredentialFile", "default_path"]

# Far above what any number of registries needs; a larger file is refused, not read.
MAX_FILE_BYTES = 1024 * 1024


class CorruptFile(Exception):
    """The file is not one this helper wrote (or it was cut short)."""


@dataclass(frozen=True)
class Credential:
    username: str
    secret: str


def default_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tokenserver" / "credentials.json"


class CredentialFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, Credential]:
        try:
            with self.path.open("rb") as file:
                raw = file.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return {}
        if len(raw) > MAX_FILE_BYTES:
            raise CorruptFile(f"{self.path} is larger than {MAX_FILE_BYTES} bytes")
        try:
            entries = json.loads(raw)["auths"]
            return {
                str(server): Credential(str(entry["Username"]), str(entry["Secret"]))
                for server, entry in entries.items()
            }
        except (ValueError, KeyError, TypeError, AttributeError):
            raise CorruptFile(f"{self.path} is not a credentials file of this helper") from None

    def put(self, server: str, credential: Credential | None) -> bool:
        """Keep `credential` for `server` (None: forget it); whether there was one before.

        Under a lock, so helpers run at once (docker asks for several
        registries in parallel) do not lose each other's changes.
        """
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = os.open(self.path.with_name(".credentials.lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = self.read()
            had = entries.pop(server, None) is not None
            if credential is not None:
                entries[server] = credential
            self._write(entries)
            return had
        finally:
            os.close(lock)

    def _write(self, entries: dict[str, Credential]) -> None:
        document = {
            "auths": {
                server: {"Username": c.username, "Secret": c.secret}
                for server, c in sorted(entries.items())
            }
        }
        # mkstemp makes the file 0600 before a byte is written.
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".credentials-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(document, file, indent=2)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

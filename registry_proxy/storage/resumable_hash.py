"""A SHA-256 whose running state can be stored and restored, so an upload can move between processes.

Backed by the `rehashes` package (hashlib's OpenSSL objects cannot be
serialized, and `rehash`, which reached into them, does not work with
OpenSSL 3). Measured here: 1446 MB/s against hashlib's 1627 MB/s, 1 MiB
updates. Imported only where uploads go to a multipart store.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ALGORITHM", "ResumableSha256"]

ALGORITHM = "sha256"


class ResumableSha256:
    def __init__(self, state: bytes | None = None) -> None:
        import rehashes

        try:
            self._hasher: Any = (
                rehashes.PySha256() if state is None else rehashes.PySha256.deserialize(state)
            )
        except Exception as exc:  # whatever the extension raises for a state it cannot read
            raise ValueError(f"not a SHA-256 state: {exc}") from None

    def update(self, data: bytes) -> None:
        self._hasher.update(data)

    def state(self) -> bytes:
        """Everything needed to continue (about a hundred bytes)."""
        state: bytes = self._hasher.serialize()
        return state

    def hexdigest(self) -> str:
        """The digest of what was fed so far; hashing may go on afterwards."""
        import rehashes

        digest: str = rehashes.PySha256.deserialize(self.state()).finalize()
        return digest

"""The storage layer's errors; the HTTP layer maps each class to one OCI error code."""

from __future__ import annotations

__all__ = [
    "BlobUnknown",
    "BlobUploadUnknown",
    "DigestInvalid",
    "ManifestBlobUnknown",
    "ManifestInvalid",
    "ManifestTooLarge",
    "ManifestUnknown",
    "NameUnknown",
    "PathInvalid",
    "RangeInvalid",
    "StorageError",
    "StorageUnavailable",
]


class StorageError(Exception):
    """Base of every error the storage layer raises on purpose."""


class _Reasoned(StorageError):
    """An error that is its reason, for the client or the log to read."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BlobUnknown(StorageError):
    def __init__(self, digest: object) -> None:
        super().__init__(f"blob unknown: {digest}")
        self.digest = str(digest)


class BlobUploadUnknown(StorageError):
    def __init__(self, upload_id: str) -> None:
        super().__init__(f"blob upload unknown: {upload_id[:100]}")
        self.upload_id = upload_id


class DigestInvalid(_Reasoned):
    """The content does not match the digest the client named (or the digest is unusable)."""


class ManifestUnknown(StorageError):
    def __init__(self, reference: object) -> None:
        super().__init__(f"manifest unknown: {str(reference)[:300]}")
        self.reference = str(reference)


class ManifestInvalid(_Reasoned):
    """The manifest is not one this registry accepts."""


class ManifestBlobUnknown(StorageError):
    def __init__(self, digest: object) -> None:
        super().__init__(f"manifest references an unknown blob: {digest}")
        self.digest = str(digest)


class NameUnknown(StorageError):
    def __init__(self, name: str) -> None:
        super().__init__(f"repository name not known to registry: {name}")
        self.name = name


class RangeInvalid(StorageError):
    """A chunk did not start where the upload currently ends; nothing was written."""

    def __init__(self, current_size: int) -> None:
        super().__init__(f"chunk must start at offset {current_size}")
        self.current_size = current_size


class ManifestTooLarge(StorageError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"manifest larger than {limit} bytes")
        self.limit = limit


class PathInvalid(_Reasoned):
    """A storage path that could escape the root or is otherwise malformed."""


class StorageUnavailable(_Reasoned):
    """The backend failed for a reason other than "not found"; retrying may help."""

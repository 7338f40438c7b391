"""The storage layer's errors; the HTTP layer maps each class to one OCI error code."""

from __future__ import annotations

from typing import ClassVar

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


class _Unknown(StorageError):
    """Something the client named that the registry does not hold; `subject` is that name.

    The message is `template` with the name in its `{}`; a name the URL brought unchecked
    (an upload id, a reference) is cut there (`{:.100}`): the message is the error's detail
    in the answer and in the log, and stays short.
    """

    template: ClassVar[str]

    def __init__(self, subject: object) -> None:
        self.subject = str(subject)
        super().__init__(self.template.format(self.subject))


class _DigestUnknown(_Unknown):
    @property
    def digest(self) -> str:
        return self.subject


class BlobUnknown(_DigestUnknown):
    template = "blob unknown: {}"


class BlobUploadUnknown(_Unknown):
    template = "blob upload unknown: {:.100}"


class DigestInvalid(_Reasoned):
    """The content does not match the digest the client named (or the digest is unusable)."""


class ManifestUnknown(_Unknown):
    template = "manifest unknown: {:.300}"


class ManifestInvalid(_Reasoned):
    """The manifest is not one this registry accepts."""


class ManifestBlobUnknown(_DigestUnknown):
    template = "manifest references an unknown blob: {}"


class NameUnknown(_Unknown):
    template = "repository name not known to registry: {}"


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

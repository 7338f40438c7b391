"""OCI error codes and the `{"errors": [...]}` envelope, mapped to HTTP in one place."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from starlette.responses import JSONResponse

from registry_proxy.storage import errors as storage_errors
from registry_proxy.storage.errors import StorageError
from registry_proxy.upstreams.client import (
    UpstreamDenied,
    UpstreamError,
    UpstreamNotFound,
    UpstreamUnavailable,
)

__all__ = ["RegistryError", "error_response", "from_storage", "from_upstream", "refusal"]

# code -> (HTTP status, default message)
CODES: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (400, "blob unknown to registry"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "RANGE_INVALID": (416, "invalid content range"),
    "TAG_INVALID": (400, "manifest tag did not match URI"),
    "PAGINATION_NUMBER_INVALID": (400, "invalid number of results requested"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "the operation is unsupported"),
    "TOOMANYREQUESTS": (429, "too many requests"),
    "PAYLOAD_TOO_LARGE": (413, "payload too large"),
    "UNAVAILABLE": (503, "service unavailable"),
}

API_VERSION_HEADER = {"Docker-Distribution-Api-Version": "registry/2.0"}


class RegistryError(Exception):
    """An error the client sees as the spec's code, status and envelope."""

    def __init__(
        self,
        code: str,
        detail: Any = None,
        *,
        message: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        default_status, default_message = CODES[code]
        super().__init__(message or default_message)
        self.code = code
        self.message = message or default_message
        self.detail = detail
        self.status = status or default_status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return {"errors": [entry]}


def error_response(exc: RegistryError, *, head: bool = False) -> JSONResponse:
    # The body decides the length, whatever headers the error carries along.
    headers = {
        k: v
        for k, v in {**API_VERSION_HEADER, **exc.headers}.items()
        if k.lower() != "content-length"
    }
    if head:
        # HEAD answers carry no body; the status and headers say it all.
        response = JSONResponse(None, status_code=exc.status, headers=headers)
        response.body = b""
        response.headers["content-length"] = "0"
        return response
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def refusal(status: int, message: str) -> tuple[Sequence[tuple[str, str]], bytes]:
    """A request refused by the HTTP layer (malformed or oversized head), in the envelope."""
    body = RegistryError("UNSUPPORTED", None, message=message, status=status).body()
    headers = [("content-type", "application/json"), *API_VERSION_HEADER.items()]
    return headers, json.dumps(body).encode()


def from_storage(exc: StorageError) -> RegistryError:
    """The client-facing error for a storage-layer error (one table, one place)."""
    detail = str(exc) or None
    match exc:
        case storage_errors.RangeInvalid():
            end = max(exc.current_size - 1, 0)
            return RegistryError(
                "RANGE_INVALID", {"expected_start": exc.current_size}, headers={"Range": f"0-{end}"}
            )
        case storage_errors.ManifestTooLarge():
            return RegistryError("PAYLOAD_TOO_LARGE", detail, message="manifest too large")
        case storage_errors.PathInvalid():
            return RegistryError("NAME_INVALID", None)
        case storage_errors.StorageUnavailable():
            return RegistryError("UNAVAILABLE", None, message="storage unavailable")
    for cls, code in _STORAGE_CODES:
        if isinstance(exc, cls):
            return RegistryError(code, detail)
    return RegistryError("UNAVAILABLE", None, message="storage error")


def from_upstream(exc: UpstreamError, unknown: str, detail: Any = None) -> RegistryError:
    """The client-facing error for an upstream registry's failure; `unknown` is the code
    of what was asked for when the upstream has no such thing (MANIFEST_UNKNOWN, ...)."""
    match exc:
        case UpstreamNotFound():
            return RegistryError(unknown, detail)
        case UpstreamUnavailable() if exc.status == 429:
            after = {} if exc.retry_after is None else {"Retry-After": str(int(exc.retry_after))}
            return RegistryError(
                "TOOMANYREQUESTS", None, message="the upstream registry is limiting", headers=after
            )
        case UpstreamUnavailable():
            return RegistryError(
                "UNAVAILABLE", None, message="the upstream registry is unavailable"
            )
        case UpstreamDenied():
            return RegistryError(
                "DENIED", None, message="the upstream registry refuses this registry's access"
            )
    return RegistryError(
        "UNAVAILABLE",
        None,
        message="the upstream registry answered something unusable",
        status=502,
    )


_STORAGE_CODES: tuple[tuple[type[StorageError], str], ...] = (
    (storage_errors.BlobUnknown, "BLOB_UNKNOWN"),
    (storage_errors.BlobUploadUnknown, "BLOB_UPLOAD_UNKNOWN"),
    (storage_errors.DigestInvalid, "DIGEST_INVALID"),
    (storage_errors.ManifestBlobUnknown, "MANIFEST_BLOB_UNKNOWN"),
    (storage_errors.ManifestUnknown, "MANIFEST_UNKNOWN"),
    (storage_errors.ManifestInvalid, "MANIFEST_INVALID"),
    (storage_errors.NameUnknown, "NAME_UNKNOWN"),
)

"""The registry's request-context keys: the shared ones, the repository and the error."""

from __future__ import annotations

from typing import Any

from authcore.context import ACCOUNT, REQUEST_ID, ContextKey, make_key

__all__ = ["ACCOUNT", "ERROR_CODE", "ERROR_DETAIL", "ERROR_MESSAGE", "KEYS", "REPOSITORY"]

REPOSITORY: ContextKey[str] = make_key("repository", str)
ERROR_CODE: ContextKey[str] = make_key("err.code", str)
ERROR_MESSAGE: ContextKey[str] = make_key("err.message", str)
ERROR_DETAIL: ContextKey[Any] = make_key("err.detail", lambda v: v)

KEYS: tuple[ContextKey[Any], ...] = (
    REQUEST_ID,
    ACCOUNT,
    REPOSITORY,
    ERROR_CODE,
    ERROR_MESSAGE,
    ERROR_DETAIL,
)

"""Strict parsing of query strings, form bodies and Basic credentials."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import parse_qsl

from tokenserver.errors import InvalidRequest
from tokenserver.secret import Secret

__all__ = ["Params", "parse_basic", "parse_params"]


class Params:
    """Decoded parameters; single-valued ones must not repeat (RFC 6749 §3.1)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def all(self, name: str) -> list[str]:
        return [v for k, v in self._pairs if k == name]

    def one(self, name: str) -> str | None:
        values = self.all(name)
        if len(values) > 1:
            raise InvalidRequest(f"parameter {name!r} is repeated")
        return values[0] if values else None

    def required(self, name: str) -> str:
        value = self.one(name)
        if not value:
            raise InvalidRequest(f"parameter {name!r} is required")
        return value

    def secret(self, name: str) -> Secret | None:
        value = self.one(name)
        return None if value is None else Secret(value)


def parse_params(raw: bytes) -> Params:
    try:
        text = raw.decode("ascii")
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise InvalidRequest("parameters are not valid UTF-8") from None
    except ValueError:
        raise InvalidRequest("malformed parameters") from None
    if any("\x00" in k or "\x00" in v for k, v in pairs):
        raise InvalidRequest("parameters contain a NUL character")
    return Params(pairs)


def parse_basic(header: str) -> tuple[str, Secret]:
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise InvalidRequest("only Basic credentials are accepted here")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise InvalidRequest("malformed Basic credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep or not username:
        raise InvalidRequest("malformed Basic credentials")
    if "\x00" in username:
        raise InvalidRequest("malformed Basic credentials")
    return username, Secret(password)

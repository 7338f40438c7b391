"""Repository names, tags and digests as the distribution spec defines them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

__all__ = [
    "Digest",
    "InvalidDigest",
    "InvalidName",
    "InvalidTag",
    "UnsupportedDigest",
    "check_name",
    "check_tag",
    "is_digest",
    "is_name",
    "is_tag",
]

MAX_NAME_LENGTH = 255
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_DIGEST = re.compile(r"([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")
_HEX_LENGTH = {"sha256": 64, "sha512": 128}


class InvalidName(ValueError):
    pass


class InvalidTag(ValueError):
    pass


class InvalidDigest(ValueError):
    pass


class UnsupportedDigest(InvalidDigest):
    """Well-formed, but an algorithm this registry does not implement."""


def is_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and _NAME.fullmatch(name) is not None


def is_tag(tag: str) -> bool:
    return _TAG.fullmatch(tag) is not None


def check_name(name: str) -> str:
    if not is_name(name):
        raise InvalidName(name[:300])
    return name


def check_tag(tag: str) -> str:
    if not is_tag(tag):
        raise InvalidTag(tag[:300])
    return tag


def is_digest(reference: str) -> bool:
    return ":" in reference


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        match = _DIGEST.fullmatch(text)
        if match is None:
            raise InvalidDigest(text[:300])
        algorithm, encoded = match.groups()
        length = _HEX_LENGTH.get(algorithm)
        if length is None:
            raise UnsupportedDigest(algorithm)
        if len(encoded) != length or not re.fullmatch(r"[a-f0-9]+", encoded):
            raise InvalidDigest(text[:300])
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

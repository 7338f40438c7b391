"""What a pushed manifest's references must satisfy: the Go registry's `validation` rules.

Which descriptors of an image manifest must be stored here, which may
instead name `urls` (foreign, non-distributable layers), and which URLs are
allowed; which children of an index must exist. The rules are the Go
registry's, media type by media type, so a configuration carries over with
the same outcome.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from registry_proxy.storage.errors import ManifestInvalid
from registry_proxy.storage.schema import DOCKER_MANIFEST, Descriptor

__all__ = ["DOCKER_FOREIGN_LAYER", "ChildRule", "ManifestRules", "URLMatcher"]

DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_LAYERS = frozenset(
    {"application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.v1.tar+gzip"}
)
OCI_NONDISTRIBUTABLE_LAYERS = frozenset(
    {
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    }
)

URLMatcher = Callable[[str], bool]
ChildRule = Literal["all", "none", "list"]

# What Go's url.Parse refuses, part by part: control characters anywhere; in the
# user info, host and path a `%` that starts no escape; in the host (and user info)
# an ASCII character outside its set; a port that is not digits.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BROKEN_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_BAD_HOST = re.compile(r"[^\x80-\U0010ffffA-Za-z0-9\-._~!$&'()*+,;=:\[\]<>\"%]")
_BAD_USERINFO = re.compile(r"[^\x80-\U0010ffffA-Za-z0-9\-._~!$&'()*+,;=:%@]")
_PORT = re.compile(r"(?::[0-9]*)?")
_SCHEME = re.compile(r"https?:", re.IGNORECASE)


def _nothing(_url: str) -> bool:
    return False


def _anything(_url: str) -> bool:
    return True


@dataclass(frozen=True)
class ManifestRules:
    """The defaults are the Go registry's: no URL allowed, every child of an index present."""

    # A URL must match `allow` and not `deny` (each: any of its patterns, found anywhere).
    allow: URLMatcher = _nothing
    deny: URLMatcher = _nothing
    children: ChildRule = "all"
    # With `children="list"`: the (os, architecture) pairs whose children must exist.
    platforms: frozenset[tuple[str, str]] = field(default_factory=frozenset)

    @classmethod
    def unchecked(cls) -> ManifestRules:
        """`validation.disabled`: any http(s) URL, and an index's children are not looked for."""
        return cls(allow=_anything, children="none")

    def stored_references(
        self, media_type: str, references: Iterable[Descriptor]
    ) -> list[Descriptor]:
        """The references of an image manifest that must be stored in the repository.

        `ManifestInvalid` if a layer's URLs are refused (or a Docker foreign
        layer has none).
        """
        return [d for d in references if self._must_be_stored(media_type, d)]

    def required_children(self, children: Iterable[Descriptor]) -> list[Descriptor]:
        """The children of an index that must exist before the index is accepted."""
        if self.children == "none":
            return []
        if self.children == "all" or not self.platforms:
            return list(children)
        return [c for c in children if c.platform is not None and c.platform in self.platforms]

    def _must_be_stored(self, media_type: str, d: Descriptor) -> bool:
        if media_type == DOCKER_MANIFEST:
            if d.media_type != DOCKER_FOREIGN_LAYER:
                return True  # whatever URLs it names, the bytes must be here
            if not d.urls:
                raise ManifestInvalid(f"foreign layer {d.digest} names no URL")
            self._check_urls(d)
            return False
        if d.media_type in OCI_LAYERS:
            self._check_urls(d)
            return True
        if d.media_type in OCI_NONDISTRIBUTABLE_LAYERS:
            self._check_urls(d)
            return not d.urls
        return True

    def _check_urls(self, d: Descriptor) -> None:
        for url in d.urls:
            if not self._permits(url):
                raise ManifestInvalid(f"layer {d.digest}: URL not allowed: {url[:200]!r}")

    def _permits(self, url: str) -> bool:
        if not _parses_as_go_does(url):
            return False
        return self.allow(url) and not self.deny(url)


def _parses_as_go_does(url: str) -> bool:
    """An http(s) URL without a fragment that Go's `url.Parse` takes."""
    # The scheme first (urlsplit would skip leading blanks that Go does not).
    if _CONTROL.search(url) or not _SCHEME.match(url):
        return False
    try:
        url.encode()
    except UnicodeEncodeError:
        return False  # a lone surrogate (`"\ud800"` in the JSON): text no pattern can read
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed `[` in the host
        return False
    if parts.fragment:
        return False
    userinfo, _, hostport = parts.netloc.rpartition("@")
    if _BAD_USERINFO.search(userinfo) or _BROKEN_ESCAPE.search(userinfo):
        return False
    host, port = hostport, ""
    if hostport.startswith("["):
        host, _, port = hostport.partition("]")
    elif ":" in hostport:
        host, colon, rest = hostport.partition(":")
        port = colon + rest
    if not _PORT.fullmatch(port) or _BAD_HOST.search(host) or _BROKEN_ESCAPE.search(host):
        return False
    return not _BROKEN_ESCAPE.search(parts.path)

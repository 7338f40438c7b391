"""Manifest media types and the parts of a manifest the registry looks at.

One reading of a manifest for everything: validation on push, media type on
pull, referrer descriptors, and what garbage collection must keep.
"""

from __future__ import annotations

import json
import re
from array import array
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from registry_proxy.reference import Digest, InvalidDigest
from registry_proxy.storage.errors import ManifestInvalid

__all__ = [
    "DOCKER_LIST",
    "DOCKER_MANIFEST",
    "IMAGE_TYPES",
    "INDEX_TYPES",
    "MAX_DEPTH",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "SUPPORTED_TYPES",
    "Descriptor",
    "ManifestInfo",
    "decode",
    "infer_media_type",
    "parse",
    "stored_media_type",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
# Only ever read back from data an older Go registry wrote; never accepted on push.
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
SUPPORTED_TYPES = IMAGE_TYPES | INDEX_TYPES


@dataclass(frozen=True, slots=True)
class Descriptor:
    digest: Digest
    media_type: str | None = None
    size: int | None = None
    # Where a foreign (non-distributable) layer can be fetched instead.
    urls: tuple[str, ...] = ()
    # (os, architecture) of an index's child, if it says.
    platform: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    media_type: str
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    children: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, Any] | None = None

    def references(self) -> list[Descriptor]:
        """Everything this manifest needs kept: config, layers, child manifests."""
        config = [self.config] if self.config is not None else []
        return [*config, *self.layers, *self.children]


# Real manifests nest six levels at most (index, descriptor, platform, features);
# deeper documents are refused before parsing, so neither the parser nor anything
# that walks or re-serialises a decoded manifest (referrer annotations) recurses far.
MAX_DEPTH = 100
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPENERS, _CLOSERS = b"[{", b"]}"
_NESTING = bytes.maketrans(_OPENERS + _CLOSERS, b"\x01\x01\xff\xff")
_NOT_NESTING = bytes(set(range(256)) - set(_OPENERS + _CLOSERS))


def nesting_depth(body: bytes) -> int:
    """How deep arrays and objects nest in JSON `body` (brackets inside strings do not count)."""
    if body.count(b"[") + body.count(b"{") == 0:
        return 0
    structure = _JSON_STRING.sub(b"", body).translate(_NESTING, _NOT_NESTING)
    # Signed bytes: +1 per opener, -1 per closer; the deepest point is the largest running sum.
    return max(accumulate(array("b", structure)), default=0)


def decode(body: bytes) -> dict[str, Any]:
    """The manifest's JSON object, or `ManifestInvalid` (also when it nests past `MAX_DEPTH`)."""
    if nesting_depth(body) > MAX_DEPTH:
        raise ManifestInvalid(f"manifest nests deeper than {MAX_DEPTH} levels")
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise ManifestInvalid("manifest is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ManifestInvalid("manifest is not a JSON object")
    return doc


def infer_media_type(doc: dict[str, Any]) -> str | None:
    """The OCI type a manifest without a `mediaType` field has, judged by its shape."""
    if "manifests" in doc:
        return OCI_INDEX
    if "config" in doc and "layers" in doc:
        return OCI_MANIFEST
    return None


def stored_media_type(doc: dict[str, Any]) -> str:
    """The media type of stored bytes, decided as the Go registry decides it."""
    field = doc.get("mediaType")
    if isinstance(field, str) and field:
        return field
    if doc.get("schemaVersion") == 1:
        return DOCKER_SCHEMA1_SIGNED if "signatures" in doc else DOCKER_SCHEMA1
    return infer_media_type(doc) or OCI_MANIFEST


def parse(doc: dict[str, Any], media_type: str) -> ManifestInfo:
    """What a manifest of `media_type` refers to; `ManifestInvalid` if malformed."""
    subject = _descriptor(doc["subject"], "subject") if "subject" in doc else None
    artifact_type = _optional_str(doc, "artifactType")
    annotations = doc.get("annotations")
    if annotations is not None and not isinstance(annotations, dict):
        raise ManifestInvalid("annotations must be an object")
    common: dict[str, Any] = {
        "media_type": media_type,
        "subject": subject,
        "artifact_type": artifact_type,
        "annotations": annotations,
    }
    if media_type in INDEX_TYPES:
        return ManifestInfo(children=_descriptors(doc, "manifests"), **common)
    if media_type in IMAGE_TYPES:
        if "config" not in doc:
            raise ManifestInvalid("image manifest without config")
        config = _descriptor(doc["config"], "config")
        return ManifestInfo(config=config, layers=_descriptors(doc, "layers"), **common)
    if media_type in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
        return ManifestInfo(layers=_schema1_layers(doc), **common)
    raise ManifestInvalid(f"unsupported manifest media type {media_type[:100]}")


def _optional_str(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise ManifestInvalid(f"{key} must be a string")
    return value


def _descriptors(doc: dict[str, Any], key: str) -> tuple[Descriptor, ...]:
    items = doc.get(key)
    if not isinstance(items, list):
        raise ManifestInvalid(f"{key} must be a list")
    return tuple(_descriptor(item, key) for item in items)


def _descriptor(item: object, where: str) -> Descriptor:
    if not isinstance(item, dict):
        raise ManifestInvalid(f"{where}: descriptor must be an object")
    digest = _digest(item.get("digest"), where)
    media_type = item.get("mediaType")
    if media_type is not None and not isinstance(media_type, str):
        raise ManifestInvalid(f"{where}: mediaType must be a string")
    size = item.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise ManifestInvalid(f"{where}: size must be a non-negative integer")
    urls = item.get("urls")
    if urls is not None and not (isinstance(urls, list) and all(isinstance(u, str) for u in urls)):
        raise ManifestInvalid(f"{where}: urls must be a list of strings")
    return Descriptor(digest, media_type, size, tuple(urls or ()), _platform(item, where))


def _platform(item: dict[str, Any], where: str) -> tuple[str, str] | None:
    platform = item.get("platform")
    if platform is None:
        return None
    if not isinstance(platform, dict):
        raise ManifestInvalid(f"{where}: platform must be an object")
    os_, architecture = platform.get("os", ""), platform.get("architecture", "")
    if not isinstance(os_, str) or not isinstance(architecture, str):
        raise ManifestInvalid(f"{where}: platform os and architecture must be strings")
    return os_, architecture


def _digest(value: object, where: str) -> Digest:
    if not isinstance(value, str):
        raise ManifestInvalid(f"{where}: descriptor without a digest")
    try:
        return Digest.parse(value)
    except InvalidDigest:
        raise ManifestInvalid(f"{where}: invalid digest {value[:100]}") from None


def _schema1_layers(doc: dict[str, Any]) -> tuple[Descriptor, ...]:
    layers = doc.get("fsLayers")
    if not isinstance(layers, list):
        raise ManifestInvalid("fsLayers must be a list")
    return tuple(
        Descriptor(_digest(layer.get("blobSum") if isinstance(layer, dict) else None, "fsLayers"))
        for layer in layers
    )

"""Every storage path, in one place: the Go registry's (v2) filesystem layout.

docker/registry/v2/blobs/<alg>/<2 hex>/<hex>/data
docker/registry/v2/repositories/<name>/
    _layers/<alg>/<hex>/link                        -> "<alg>:<hex>"
    _manifests/revisions/<alg>/<hex>/link
    _manifests/tags/<tag>/current/link
    _manifests/tags/<tag>/index/<alg>/<hex>/link
    _uploads/<uuid>/data, _uploads/<uuid>/startedat  (RFC 3339)
    _uploads/<uuid>/session                         (ours, on multipart stores)
    _referrers/<alg>/<subject hex>/<alg>/<referrer hex>/link, .../descriptor   (ours only)
docker/registry/v2/_proxycache/<name>/               (ours only: upstream content's use)
    _layers/<alg>/<hex>/used, _manifests/<alg>/<hex>/used   -> RFC 3339 time of last use
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry_proxy.reference import Digest, InvalidName, InvalidTag, check_name, check_tag
from registry_proxy.storage.errors import PathInvalid

__all__ = [
    "BLOBS",
    "LAYERS",
    "PROXYCACHE",
    "REPOSITORIES",
    "REVISIONS",
    "ROOT",
    "UPLOAD_ID",
    "DigestLinks",
    "blob_data",
    "blob_dir",
    "manifests_dir",
    "proxycache_dir",
    "proxycache_used",
    "referrer_descriptor",
    "referrer_dir",
    "referrer_link",
    "referrers_of",
    "repository",
    "tag_current_link",
    "tag_dir",
    "tag_index_link",
    "tags",
    "upload_data",
    "upload_dir",
    "upload_session",
    "upload_started_at",
]

ROOT = "docker/registry/v2"
BLOBS = f"{ROOT}/blobs"
REPOSITORIES = f"{ROOT}/repositories"
# Beside `repositories/`, never listed by the Go registry: what upstream content was last used.
PROXYCACHE = f"{ROOT}/_proxycache"
UPLOAD_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ALGORITHM = re.compile(r"[a-z0-9]+")
_HEX = re.compile(r"[a-f0-9]{2,}")


def _digest(digest: Digest) -> tuple[str, str]:
    # Digest.parse has checked this already; a hand-built Digest may not have been.
    if not _ALGORITHM.fullmatch(digest.algorithm) or not _HEX.fullmatch(digest.hex):
        raise PathInvalid("malformed digest")
    return digest.algorithm, digest.hex


def repository(name: str) -> str:
    try:
        check_name(name)
    except InvalidName:
        raise PathInvalid("invalid repository name") from None
    return f"{REPOSITORIES}/{name}"


def blob_dir(digest: Digest) -> str:
    algorithm, hex_ = _digest(digest)
    return f"{BLOBS}/{algorithm}/{hex_[:2]}/{hex_}"


def blob_data(digest: Digest) -> str:
    return f"{blob_dir(digest)}/data"


def _by_digest(parent: str, digest: Digest) -> str:
    algorithm, hex_ = _digest(digest)
    return f"{parent}/{algorithm}/{hex_}"


@dataclass(frozen=True, slots=True)
class DigestLinks:
    """A repository's `<alg>/<hex>/link` files below `subdir`: what it holds, by digest.

    Its layers and its manifest revisions are two such trees; a link names the
    content (`<alg>:<hex>`) that the repository may serve.
    """

    subdir: str

    def root(self, name: str) -> str:
        return f"{repository(name)}/{self.subdir}"

    def directory(self, name: str, digest: Digest) -> str:
        return _by_digest(self.root(name), digest)

    def link(self, name: str, digest: Digest) -> str:
        return f"{self.directory(name, digest)}/link"


LAYERS = DigestLinks("_layers")
REVISIONS = DigestLinks("_manifests/revisions")


def manifests_dir(name: str) -> str:
    return f"{repository(name)}/_manifests"


def tags(name: str) -> str:
    return f"{manifests_dir(name)}/tags"


def tag_dir(name: str, tag: str) -> str:
    try:
        check_tag(tag)
    except InvalidTag:
        raise PathInvalid("invalid tag") from None
    return f"{tags(name)}/{tag}"


def tag_current_link(name: str, tag: str) -> str:
    return f"{tag_dir(name, tag)}/current/link"


def tag_index_link(name: str, tag: str, digest: Digest) -> str:
    index = f"{tag_dir(name, tag)}/index"
    return f"{_by_digest(index, digest)}/link"


def upload_dir(name: str, upload_id: str) -> str:
    if not UPLOAD_ID.fullmatch(upload_id):
        raise PathInvalid("malformed upload id")
    return f"{repository(name)}/_uploads/{upload_id}"


def upload_data(name: str, upload_id: str) -> str:
    return f"{upload_dir(name, upload_id)}/data"


def upload_started_at(name: str, upload_id: str) -> str:
    return f"{upload_dir(name, upload_id)}/startedat"


def upload_session(name: str, upload_id: str) -> str:
    """Ours alone: the state of an upload to a multipart store (offset, parts, hash, tail)."""
    return f"{upload_dir(name, upload_id)}/session"


def referrers_of(name: str, subject: Digest) -> str:
    return _by_digest(f"{repository(name)}/_referrers", subject)


def referrer_dir(name: str, subject: Digest, referrer: Digest) -> str:
    return _by_digest(referrers_of(name, subject), referrer)


def referrer_link(name: str, subject: Digest, referrer: Digest) -> str:
    return f"{referrer_dir(name, subject, referrer)}/link"


def referrer_descriptor(name: str, subject: Digest, referrer: Digest) -> str:
    """Ours alone: the referrer's OCI descriptor (JSON), as the referrers API lists it."""
    return f"{referrer_dir(name, subject, referrer)}/descriptor"


def proxycache_dir(name: str, kind: str, digest: Digest) -> str:
    """Ours alone: what is kept of a cached layer's or manifest's use (`kind`: `_layers`
    or `_manifests`), outside the repository so the Go registry never sees it."""
    if kind not in ("_layers", "_manifests"):
        raise PathInvalid("unknown kind of cached content")
    repository(name)
    return _by_digest(f"{PROXYCACHE}/{name}/{kind}", digest)


def proxycache_used(name: str, kind: str, digest: Digest) -> str:
    return f"{proxycache_dir(name, kind, digest)}/used"

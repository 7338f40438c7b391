"""Container images built by hand: OCI image layouts and `docker save` archives.

Everything is derived from a seed, with fixed timestamps and owners, so the
same arguments always give the same bytes and digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OCI_LAYOUT_VERSION = "1.0.0"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class ImageInfo:
    """Digests ("sha256:…") and raw bytes of an image written to an OCI layout."""

    tag: str
    manifest_digest: str
    manifest: bytes
    config_digest: str
    config: bytes
    layer_digests: list[str]
    diff_ids: list[str]


@dataclass(frozen=True)
class ArchiveInfo:
    """What a `docker save`-style archive holds; the image ID is the config digest."""

    path: Path
    repo_tag: str
    config_digest: str
    config: bytes
    diff_ids: list[str]


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _tar_info(name: str, *, size: int = 0, is_dir: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.mode = 0o755 if is_dir else 0o644
    return info


def _parent_dirs(files: dict[str, bytes]) -> list[str]:
    dirs = {str(parent) for name in files for parent in Path(name).parents if str(parent) != "."}
    return sorted(dirs)


def make_tar(files: dict[str, bytes]) -> bytes:
    """An uncompressed tar of `files` (path -> content), parent directories included."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in _parent_dirs(files):
            tar.addfile(_tar_info(directory, is_dir=True))
        for name in sorted(files):
            content = files[name]
            tar.addfile(_tar_info(name, size=len(content)), io.BytesIO(content))
    return buf.getvalue()


def make_layer(files: dict[str, bytes]) -> bytes:
    """A gzipped tar layer of `files` (path -> content)."""
    return gzip.compress(make_tar(files), mtime=0)


def layer_files(seed: str, index: int) -> dict[str, bytes]:
    """Distinct content for layer `index` of an image made from `seed`."""
    # A few KiB of pseudo-random bytes so blobs are not trivially small.
    noise = b"".join(
        hashlib.sha256(f"{seed}/{index}/{block}".encode()).digest() for block in range(128)
    )
    return {
        f"layer{index}/hello.txt": f"seed={seed} layer={index}\n".encode(),
        f"layer{index}/noise.bin": noise,
    }


def image_config(diff_ids: list[str], seed: str) -> bytes:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Env": [f"SEED={seed}"], "Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "by hand"} for _ in diff_ids],
    }
    return canonical_json(config)


def _write_blob(blobs_dir: Path, data: bytes) -> str:
    digest = sha256_digest(data)
    (blobs_dir / digest.removeprefix("sha256:")).write_bytes(data)
    return digest


def _descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}


def _update_index(layout_dir: Path, manifest_descriptor: dict[str, Any], tag: str) -> None:
    index_path = layout_dir / "index.json"
    if index_path.exists():
        index = json.loads(index_path.read_text())
    else:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    kept = [
        m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME_ANNOTATION) != tag
    ]
    annotated = {**manifest_descriptor, "annotations": {REF_NAME_ANNOTATION: tag}}
    index["manifests"] = [*kept, annotated]
    index_path.write_bytes(canonical_json(index))


def write_oci_layout(
    layout_dir: str | Path,
    *,
    tag: str = "v1",
    layers: int = 2,
    seed: str = "x",
    layer_bytes: int = 0,
) -> ImageInfo:
    """Write (or add `tag` to) an OCI image layout that skopeo reads as `oci:DIR:tag`.

    With `layer_bytes`, each layer also carries that many pseudo-random bytes
    (stored, not compressed, in its gzip), for images of a chosen size.
    """
    layout_dir = Path(layout_dir)
    blobs_dir = layout_dir / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True, exist_ok=True)
    (layout_dir / "oci-layout").write_bytes(
        canonical_json({"imageLayoutVersion": OCI_LAYOUT_VERSION})
    )

    contents = [layer_files(seed, i) for i in range(layers)]
    if layer_bytes:
        for i, files in enumerate(contents):
            files[f"layer{i}/payload.bin"] = random.Random(f"{seed}/{i}").randbytes(layer_bytes)
    tars = [make_tar(files) for files in contents]
    level = 0 if layer_bytes else 9  # random bytes do not compress; do not try
    gzipped = [gzip.compress(t, compresslevel=level, mtime=0) for t in tars]
    diff_ids = [sha256_digest(t) for t in tars]
    layer_digests = [_write_blob(blobs_dir, g) for g in gzipped]
    config = image_config(diff_ids, seed)
    config_digest = _write_blob(blobs_dir, config)

    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": _descriptor(OCI_CONFIG, config),
            "layers": [_descriptor(OCI_LAYER_GZIP, g) for g in gzipped],
        }
    )
    manifest_digest = _write_blob(blobs_dir, manifest)
    _update_index(layout_dir, _descriptor(OCI_MANIFEST, manifest), tag)
    return ImageInfo(
        tag=tag,
        manifest_digest=manifest_digest,
        manifest=manifest,
        config_digest=config_digest,
        config=config,
        layer_digests=layer_digests,
        diff_ids=diff_ids,
    )


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_tar_info(name, size=len(data)), io.BytesIO(data))


def write_docker_archive(
    path: str | Path,
    *,
    repo_tag: str = "127.0.0.1:5000/alice/app:v1",
    layers: int = 2,
    seed: str = "x",
) -> ArchiveInfo:
    """Write a `docker save`-style tarball that `docker load` and `ctr images import` accept."""
    path = Path(path)
    tars = [make_tar(layer_files(seed, i)) for i in range(layers)]
    diff_ids = [sha256_digest(t) for t in tars]
    config = image_config(diff_ids, seed)
    config_digest = sha256_digest(config)
    config_name = config_digest.removeprefix("sha256:") + ".json"
    layer_names = [d.removeprefix("sha256:") + "/layer.tar" for d in diff_ids]
    manifest = [{"Config": config_name, "RepoTags": [repo_tag], "Layers": layer_names}]

    with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_member(tar, config_name, config)
        for name, layer in zip(layer_names, tars, strict=True):
            tar.addfile(_tar_info(name.removesuffix("/layer.tar"), is_dir=True))
            _add_member(tar, name, layer)
        _add_member(tar, "manifest.json", canonical_json(manifest))
    return ArchiveInfo(
        path=path,
        repo_tag=repo_tag,
        config_digest=config_digest,
        config=config,
        diff_ids=diff_ids,
    )


@dataclass(frozen=True)
class IndexInfo:
    """An image index written to an OCI layout, and the platform images it lists."""

    tag: str
    index_digest: str
    index: bytes
    images: dict[str, ImageInfo]


def write_oci_index_layout(
    layout_dir: str | Path,
    *,
    tag: str = "v1",
    platforms: tuple[str, ...] = ("linux/amd64", "linux/arm64"),
    layers: int = 2,
    seed: str = "x",
) -> IndexInfo:
    """Write (or add `tag` to) an OCI layout whose `tag` is an image index over `platforms`.

    Each platform ("os/architecture") gets its own image with distinct layers and a
    config naming that platform; skopeo reads it as `oci:DIR:tag` (copy it with `--all`).
    """
    layout_dir = Path(layout_dir)
    blobs_dir = layout_dir / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True, exist_ok=True)
    (layout_dir / "oci-layout").write_bytes(
        canonical_json({"imageLayoutVersion": OCI_LAYOUT_VERSION})
    )

    images: dict[str, ImageInfo] = {}
    entries: list[dict[str, Any]] = []
    for platform in platforms:
        os_name, architecture = platform.split("/", 1)
        platform_seed = f"{seed}/{platform}"
        tars = [make_tar(layer_files(platform_seed, i)) for i in range(layers)]
        gzipped = [gzip.compress(t, mtime=0) for t in tars]
        diff_ids = [sha256_digest(t) for t in tars]
        layer_digests = [_write_blob(blobs_dir, g) for g in gzipped]
        config_obj = json.loads(image_config(diff_ids, platform_seed))
        config_obj.update(os=os_name, architecture=architecture)
        config = canonical_json(config_obj)
        config_digest = _write_blob(blobs_dir, config)
        manifest = canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": _descriptor(OCI_CONFIG, config),
                "layers": [_descriptor(OCI_LAYER_GZIP, g) for g in gzipped],
            }
        )
        manifest_digest = _write_blob(blobs_dir, manifest)
        entries.append(
            {
                **_descriptor(OCI_MANIFEST, manifest),
                "platform": {"architecture": architecture, "os": os_name},
            }
        )
        images[platform] = ImageInfo(
            tag=tag,
            manifest_digest=manifest_digest,
            manifest=manifest,
            config_digest=config_digest,
            config=config,
            layer_digests=layer_digests,
            diff_ids=diff_ids,
        )

    index = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    index_digest = _write_blob(blobs_dir, index)
    _update_index(layout_dir, _descriptor(OCI_INDEX, index), tag)
    return IndexInfo(tag=tag, index_digest=index_digest, index=index, images=images)

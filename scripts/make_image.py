"""`make image`: a tiny image to push, for a machine with no internet and no images yet.

Writes, under var/image/, an OCI image layout (`oci:var/image/oci:v1` for
skopeo, podman and buildah) and a `docker save` tarball (`docker load -i
var/image/demo.tar` gives `demo:1`), each one small layer made from a seed,
so the same command always makes the same bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.images import write_docker_archive, write_oci_layout  # noqa: E402

OUT = ROOT / "var" / "image"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    image = write_oci_layout(OUT / "oci", tag="v1", layers=1, seed="demo")
    archive = write_docker_archive(OUT / "demo.tar", repo_tag="demo:1", layers=1, seed="demo")
    print(f"oci:{(OUT / 'oci').relative_to(ROOT)}:v1  (manifest {image.manifest_digest})")
    print(f"{archive.path.relative_to(ROOT)}  (docker load gives {archive.repo_tag})")


if __name__ == "__main__":
    main()

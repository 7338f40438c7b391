"""The `validation` section decides as the Go registry 3.1 decides, manifest by manifest.

Both registries get the same configuration and the same pushes; what one
accepts the other accepts. (The Go registry answers a refused URL with 500
`UNKNOWN`; ours with 400 `MANIFEST_INVALID`, so only the verdicts are compared.)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.registry.test_manifest_validation import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    FOREIGN,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    OCI_NONDISTRIBUTABLE,
)
from tests.support.minter import Minter
from tests.support.peers import GoRegistryV3
from tests.support.registry_proxy import RegistryProxy

pytestmark = pytest.mark.e2e

REPO = "team/app"
SCOPE = f"repository:{REPO}:pull,push"
OCI_NONDIST = OCI_NONDISTRIBUTABLE

CONFIG = b'{"architecture":"amd64","os":"linux"}'
LAYER = b"stored layer"
ABSENT = b"a layer that is never pushed"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def desc(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest(data), "size": len(data), **extra}


def docker(*layers: dict[str, Any]) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": desc(DOCKER_CONFIG, CONFIG),
        "layers": [*layers, desc(DOCKER_LAYER, LAYER)],
    }


def oci(*layers: dict[str, Any]) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG, CONFIG),
        "layers": [*layers, desc(OCI_LAYER, LAYER)],
    }


PRESENT_CHILD = oci()
PRESENT_CHILD["annotations"] = {"child": "present"}
ABSENT_CHILD = oci()
ABSENT_CHILD["annotations"] = {"child": "absent"}


def child(doc: dict[str, Any], arch: str) -> dict[str, Any]:
    body = json.dumps(doc).encode()
    return desc(OCI_MANIFEST, body, platform={"os": "linux", "architecture": arch})


def index(*children: dict[str, Any]) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(children)}


MANIFESTS: dict[str, dict[str, Any]] = {
    "foreign-allowed": docker(desc(FOREIGN, ABSENT, urls=["https://a.example.com/l"])),
    "foreign-denied": docker(desc(FOREIGN, ABSENT, urls=["https://www.example.com/l"])),
    "foreign-elsewhere": docker(desc(FOREIGN, ABSENT, urls=["https://a.test/l"])),
    "foreign-two-urls": docker(
        desc(FOREIGN, ABSENT, urls=["https://a.example.com/l", "https://a.test/l"])
    ),
    "foreign-ftp": docker(desc(FOREIGN, ABSENT, urls=["ftp://a.example.com/l"])),
    "foreign-fragment": docker(desc(FOREIGN, ABSENT, urls=["https://a.example.com/l#x"])),
    "foreign-no-url": docker(desc(FOREIGN, ABSENT)),
    "foreign-space": docker(desc(FOREIGN, ABSENT, urls=["https://a.example.com/a b"])),
    "foreign-bad-escape": docker(desc(FOREIGN, ABSENT, urls=["https://a.example.com/%zz"])),
    "foreign-non-ascii": docker(
        desc(FOREIGN, ABSENT, urls=["https://a.example.com/\u00e9t\u00e9"])
    ),
    "foreign-upper-scheme": docker(desc(FOREIGN, ABSENT, urls=["HTTPS://a.example.com/l"])),
    "foreign-control": docker(desc(FOREIGN, ABSENT, urls=["https://a.example.com/\x01"])),
    "foreign-bad-host": docker(desc(FOREIGN, ABSENT, urls=["https://a.exa{mple.com/l"])),
    "foreign-bad-ipv6": docker(desc(FOREIGN, ABSENT, urls=["https://[::1/l"])),
    "foreign-no-host": docker(desc(FOREIGN, ABSENT, urls=["https:///l"])),
    "foreign-empty-fragment": docker(desc(FOREIGN, ABSENT, urls=["https://a.example.com/l#"])),
    "foreign-leading-space": docker(desc(FOREIGN, ABSENT, urls=[" https://a.example.com/l"])),
    "foreign-userinfo": docker(desc(FOREIGN, ABSENT, urls=["https://u:p@a.example.com/l"])),
    "foreign-bad-userinfo": docker(desc(FOREIGN, ABSENT, urls=["https://u{@a.example.com/l"])),
    "foreign-port": docker(desc(FOREIGN, ABSENT, urls=["https://a.example.com:8443/l"])),
    "foreign-bad-port": docker(desc(FOREIGN, ABSENT, urls=["https://a.example.com:x/l"])),
    "foreign-ipv6": docker(desc(FOREIGN, ABSENT, urls=["https://[::1]:5000/l"])),
    "foreign-query-escape": docker(desc(FOREIGN, ABSENT, urls=["https://a.example.com/l?%zz"])),
    "foreign-tab": docker(desc(FOREIGN, ABSENT, urls=["https://a.example.com/\tl"])),
    "docker-layer-with-url": docker(desc(DOCKER_LAYER, ABSENT, urls=["https://a.example.com/l"])),
    "oci-nondist-allowed": oci(desc(OCI_NONDIST, ABSENT, urls=["https://a.example.com/l"])),
    "oci-nondist-elsewhere": oci(desc(OCI_NONDIST, ABSENT, urls=["https://a.test/l"])),
    "oci-nondist-no-url": oci(desc(OCI_NONDIST, ABSENT)),
    "oci-layer-allowed-absent": oci(desc(OCI_LAYER, ABSENT, urls=["https://a.example.com/l"])),
    "oci-layer-allowed-present": oci(desc(OCI_LAYER, LAYER, urls=["https://a.example.com/l"])),
    "oci-layer-elsewhere-present": oci(desc(OCI_LAYER, LAYER, urls=["https://a.test/l"])),
    "index-complete": index(child(PRESENT_CHILD, "amd64")),
    "index-sparse-arm64": index(child(PRESENT_CHILD, "amd64"), child(ABSENT_CHILD, "arm64")),
    "index-sparse-amd64": index(child(ABSENT_CHILD, "amd64"), child(PRESENT_CHILD, "arm64")),
}

ALLOW = [r"^https?://([^/]+\.)*example\.com/"]
DENY = [r"^https?://www\.example\.com/"]
CONFIGS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "allow": {"manifests": {"urls": {"allow": ALLOW}}},
    "allow-deny": {"manifests": {"urls": {"allow": ALLOW, "deny": DENY}}},
    "indexes-none": {"manifests": {"indexes": {"platforms": "none"}}},
    "indexes-list": {
        "manifests": {
            "indexes": {
                "platforms": "list",
                "platformlist": [{"os": "linux", "architecture": "amd64"}],
            }
        }
    },
    "disabled": {"disabled": True},
    "deny-only": {"manifests": {"urls": {"deny": DENY}}},
}


@pytest.fixture(scope="module")
def minter(tmp_path_factory: pytest.TempPathFactory) -> Minter:
    return Minter(tmp_path_factory.mktemp("parity-keys"))


def verdicts(client: httpx.Client, headers: dict[str, str]) -> dict[str, bool]:
    for data in (CONFIG, LAYER):
        # POST then PUT: the Go registry 3 takes no monolithic POST.
        started = client.post(f"/v2/{REPO}/blobs/uploads/", headers=headers)
        assert started.status_code == 202, started.text
        location = started.headers["location"]
        separator = "&" if "?" in location else "?"
        r = client.put(f"{location}{separator}digest={digest(data)}", content=data, headers=headers)
        assert r.status_code == 201, r.text
    body = json.dumps(PRESENT_CHILD).encode()
    r = client.put(
        f"/v2/{REPO}/manifests/{digest(body)}",
        content=body,
        headers=headers | {"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 201, r.text
    found = {}
    for name, doc in MANIFESTS.items():
        answer = client.put(
            f"/v2/{REPO}/manifests/{name}",
            content=json.dumps(doc).encode(),
            headers=headers | {"Content-Type": doc["mediaType"]},
        )
        assert answer.status_code in (201, 400, 500), (name, answer.status_code, answer.text)
        found[name] = answer.status_code == 201
    return found


@pytest.mark.parametrize("config", list(CONFIGS))
def test_the_same_manifests_pass_both_registries(
    tmp_path: Path, minter: Minter, config: str
) -> None:
    validation = CONFIGS[config]
    extra = {"validation": validation} if validation else None
    with (
        GoRegistryV3(tmp_path / "go", extra=extra) as go,
        RegistryProxy(tmp_path / "ours", minter.token_auth, extra=extra) as ours,
        httpx.Client(base_url=go.url, trust_env=False) as go_client,
        httpx.Client(base_url=ours.url, trust_env=False) as our_client,
    ):
        theirs = verdicts(go_client, {})
        mine = verdicts(our_client, minter.headers(SCOPE))
    assert mine == theirs

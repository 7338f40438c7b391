"""The route table: every request reaches exactly one handler, whatever the table's order.

The table is ordered for speed (the most frequent requests first), which is
only sound while no request matches two routes in full.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.routing import Match

from registry_proxy.app import ROUTES
from registry_proxy.routes import base, blobs, catalog, manifests, referrers, tags, uploads

DIGEST = "sha256:" + "a" * 64
UPLOAD = "0b9a2d6e-6c58-4b5b-9a0e-4bd0a3b9f4a1"
# Repository names made of the words the routes are made of.
NAMES = ["app", "team/app", "blobs", "uploads", "a/blobs/uploads", "manifests/x", "tags/list"]

CASES: list[tuple[str, str, Callable[..., Any]]] = [("GET", "/v2/", base.version_check)]
CASES += [("HEAD", "/v2/", base.version_check), ("GET", "/v2/_catalog", catalog.catalog)]
for name in NAMES:
    CASES += [
        ("GET", f"/v2/{name}/blobs/{DIGEST}", blobs.get_blob),
        ("HEAD", f"/v2/{name}/blobs/{DIGEST}", blobs.get_blob),
        ("DELETE", f"/v2/{name}/blobs/{DIGEST}", blobs.delete_blob),
        ("GET", f"/v2/{name}/manifests/latest", manifests.get_manifest),
        ("HEAD", f"/v2/{name}/manifests/{DIGEST}", manifests.get_manifest),
        ("PUT", f"/v2/{name}/manifests/latest", manifests.put_manifest),
        ("DELETE", f"/v2/{name}/manifests/{DIGEST}", manifests.delete_manifest),
        ("POST", f"/v2/{name}/blobs/uploads/", uploads.start_upload),
        ("POST", f"/v2/{name}/blobs/uploads", uploads.start_upload),
        ("GET", f"/v2/{name}/blobs/uploads/{UPLOAD}", uploads.upload_status),
        ("PATCH", f"/v2/{name}/blobs/uploads/{UPLOAD}", uploads.patch_upload),
        ("PUT", f"/v2/{name}/blobs/uploads/{UPLOAD}", uploads.finish_upload),
        ("DELETE", f"/v2/{name}/blobs/uploads/{UPLOAD}", uploads.cancel_upload),
        ("GET", f"/v2/{name}/tags/list", tags.list_tags),
        ("GET", f"/v2/{name}/referrers/{DIGEST}", referrers.referrers),
    ]


def full_matches(method: str, path: str) -> list[Any]:
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    return [route for route in ROUTES if route.matches(scope)[0] == Match.FULL]


@pytest.mark.parametrize(("method", "path", "handler"), CASES)
def test_each_request_matches_exactly_one_route(
    method: str, path: str, handler: Callable[..., Any]
) -> None:
    matched = full_matches(method, path)
    assert [route.endpoint for route in matched] == [handler]


def test_every_route_is_reached() -> None:
    reached = {id(full_matches(method, path)[0]) for method, path, _ in CASES}
    assert reached == {id(route) for route in ROUTES}

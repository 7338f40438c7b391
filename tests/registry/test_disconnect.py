"""A client that goes away mid-upload leaves a resumable session, logged as a disconnect."""

from __future__ import annotations

import hashlib

import pytest
from starlette.testclient import TestClient

from tests.registry.conftest import Mint, raw_request

ALL = "repository:team/app:pull,push"


def test_disconnect_mid_patch_keeps_what_arrived(
    registry: TestClient, mint: Mint, caplog: pytest.LogCaptureFixture
) -> None:
    location = registry.post("/v2/team/app/blobs/uploads/", headers=mint(ALL)).headers["location"]
    first = b"a" * (3 * 1024 * 1024)
    statuses = raw_request(
        registry,
        "PATCH",
        location,
        mint(ALL),
        body=[
            {"type": "http.request", "body": first[: 2 * 1024 * 1024], "more_body": True},
            {"type": "http.request", "body": first[2 * 1024 * 1024 :], "more_body": True},
            {"type": "http.disconnect"},
        ],
    )
    assert statuses in ([], [499])
    records = [r for r in caplog.records if r.getMessage() == "client disconnected"]
    assert len(records) == 1
    assert not [r for r in caplog.records if r.levelname == "ERROR"]

    status = registry.get(location, headers=mint(ALL))
    assert status.status_code == 204
    received = int(status.headers["range"].split("-")[1]) + 1
    assert received == len(first)

    rest = b"b" * 1000
    r = registry.patch(
        location,
        content=rest,
        headers=mint(ALL) | {"Content-Range": f"{received}-{received + len(rest) - 1}"},
    )
    assert r.status_code == 202
    digest = "sha256:" + hashlib.sha256(first + rest).hexdigest()
    assert registry.put(f"{location}?digest={digest}", headers=mint(ALL)).status_code == 201
    blob = registry.get(f"/v2/team/app/blobs/{digest}", headers=mint(ALL))
    assert blob.content == first + rest

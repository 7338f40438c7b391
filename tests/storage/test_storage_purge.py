"""Purging abandoned upload sessions, on both drivers."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from registry_proxy.reference import Digest
from registry_proxy.storage import Storage, paths
from registry_proxy.storage.driver import FileNotFound
from registry_proxy.storage.errors import BlobUploadUnknown
from registry_proxy.storage.purge import purge_uploads
from registry_proxy.storage.s3 import S3Driver
from tests.storage.helpers import collect, session_bytes, stream

pytestmark = pytest.mark.anyio

NOW = dt.datetime.now(dt.UTC)
HOUR_AGO = NOW - dt.timedelta(hours=1)


async def session(storage: Storage, repo: str, started: dt.datetime | None = None) -> str:
    """A new upload session with a little data; `started` rewrites its `startedat`."""
    status = await storage.uploads.start(repo)
    await storage.uploads.append(repo, status.id, stream(b"partial"))
    if started is not None:
        stamp = started.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
        await storage.driver.put_content(paths.upload_started_at(repo, status.id), stamp)
    return status.id


async def alive(storage: Storage, repo: str, upload_id: str) -> bool:
    try:
        await storage.driver.stat(paths.upload_dir(repo, upload_id))
    except FileNotFound:
        return False
    return True


async def test_old_sessions_go_young_ones_stay_and_can_be_finished(storage: Storage) -> None:
    old = await session(storage, "team/app", NOW - dt.timedelta(days=8))
    nested = await session(storage, "team/app/sub", NOW - dt.timedelta(hours=2))
    young = await session(storage, "team/app")
    report = await purge_uploads(storage.driver, HOUR_AGO)
    assert sorted((p.repository, p.upload_id) for p in report.purged) == sorted(
        [("team/app", old), ("team/app/sub", nested)]
    )
    assert report.errors == []
    assert not await alive(storage, "team/app", old)
    assert not await alive(storage, "team/app/sub", nested)
    with pytest.raises(BlobUploadUnknown):
        await storage.uploads.status("team/app", old)
    # The young one goes on where it was.
    await storage.uploads.append("team/app", young, stream(b" and the rest"))
    digest = Digest.of(b"partial and the rest")
    await storage.uploads.commit("team/app", young, digest)
    assert await collect(storage.blobs.open(digest)) == b"partial and the rest"


async def test_dry_run_changes_nothing(storage: Storage) -> None:
    old = await session(storage, "team/app", NOW - dt.timedelta(days=30))
    before = await session_bytes(storage.driver, "team/app", old)
    report = await purge_uploads(storage.driver, HOUR_AGO, dry_run=True)
    assert [p.upload_id for p in report.purged] == [old]
    assert await alive(storage, "team/app", old)
    assert await session_bytes(storage.driver, "team/app", old) == before
    assert (await storage.uploads.status("team/app", old)).offset == len(b"partial")


@pytest.mark.parametrize("startedat", [None, b"not a time", b"\xff\xfe"])
async def test_without_a_readable_startedat_the_last_change_counts(
    storage: Storage, startedat: bytes | None
) -> None:
    upload_id = await session(storage, "team/app")
    path = paths.upload_started_at("team/app", upload_id)
    if startedat is None:
        await storage.driver.delete(path)
    else:
        await storage.driver.put_content(path, startedat)
    # Just written: young.
    assert (await purge_uploads(storage.driver, HOUR_AGO)).purged == []
    assert await alive(storage, "team/app", upload_id)
    # Idle for longer than the age (here: an age that ends in the future).
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    report = await purge_uploads(storage.driver, later)
    assert [p.upload_id for p in report.purged] == [upload_id]
    assert not await alive(storage, "team/app", upload_id)


async def test_what_is_not_a_session_is_left_alone(storage: Storage) -> None:
    await storage.driver.put_content(
        f"{paths.repository('team/app')}/_uploads/not-a-uuid/startedat", b"2000-01-01T00:00:00Z"
    )
    await storage.driver.put_content(
        f"{paths.repository('team/app')}/_layers/_uploads/x/startedat", b"2000-01-01T00:00:00Z"
    )
    assert (await purge_uploads(storage.driver, HOUR_AGO)).purged == []
    assert await storage.driver.list(f"{paths.repository('team/app')}/_uploads") == ["not-a-uuid"]


async def test_several_purgers_at_once_count_each_session_once(storage: Storage) -> None:
    old = {await session(storage, f"team/app{i % 3}", NOW - dt.timedelta(days=9)) for i in range(9)}
    young = await session(storage, "team/app0")
    reports = await asyncio.gather(*(purge_uploads(storage.driver, HOUR_AGO) for _ in range(4)))
    purged = [p.upload_id for report in reports for p in report.purged]
    if isinstance(storage.driver, S3Driver):
        # S3 deletes are not exclusive: racing purgers may each count a session.
        assert set(purged) == old
    else:
        assert sorted(purged) == sorted(old)  # Every old session exactly once, over all purgers.
    for upload_id in old:
        assert not any([await alive(storage, f"team/app{i}", upload_id) for i in range(3)])
    assert all(report.errors == [] for report in reports)
    assert await alive(storage, "team/app0", young)

"""Deleting abandoned upload sessions: every `_uploads/<uuid>/` whose `startedat` is too old.

As the Go registry's upload purge: repositories are walked, `_`-directories
other than `_uploads` are skipped, and a session's age is the RFC 3339 time in
its `startedat`. Where that file is missing or unreadable (the Go registry
then never deletes the session), the session's last modification counts, so
a session that lost its `startedat` is still purged once idle long enough.

Several instances may purge one root at once: a session another one deleted
first is simply not counted again (on S3, whose deletes are not exclusive,
two purgers may both count it; either way it is gone).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from registry_proxy.storage import paths
from registry_proxy.storage.catalog import walk_repositories
from registry_proxy.storage.driver import FileNotFound, StorageDriver, TooLarge
from registry_proxy.storage.errors import StorageError
from registry_proxy.storage.part_uploads import abort_session_upload

__all__ = ["PurgeReport", "PurgedUpload", "purge_uploads"]

_UPLOADS = "_uploads"


@dataclass(frozen=True, slots=True)
class PurgedUpload:
    repository: str
    upload_id: str
    started_at: dt.datetime


@dataclass(slots=True)
class PurgeReport:
    """Sessions deleted (in a dry run: that would have been), and sessions that could not be."""

    purged: list[PurgedUpload] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def purge_uploads(
    driver: StorageDriver, older_than: dt.datetime, *, dry_run: bool = False
) -> PurgeReport:
    """Delete every upload session started before `older_than` (with `dry_run`, only report)."""
    report = PurgeReport()
    async for repo, upload_id in _sessions(driver, report):
        try:
            started_at = await _started_at(driver, repo, upload_id)
            if started_at is None or started_at >= older_than:
                continue
            if not dry_run:
                await abort_session_upload(driver, repo, upload_id)
                await driver.delete(paths.upload_dir(repo, upload_id))
        except FileNotFound:
            continue  # Finished, cancelled or purged elsewhere meanwhile.
        except StorageError as exc:
            report.errors.append(f"{repo}/{_UPLOADS}/{upload_id}: {exc}")
            continue
        report.purged.append(PurgedUpload(repo, upload_id, started_at))
    return report


async def _sessions(driver: StorageDriver, report: PurgeReport) -> AsyncIterator[tuple[str, str]]:
    try:
        async with contextlib.aclosing(walk_repositories(driver, {_UPLOADS})) as repositories:
            async for repo in repositories:
                try:
                    names = await driver.list(f"{paths.repository(repo)}/{_UPLOADS}")
                except FileNotFound:
                    continue
                for name in names:
                    # Anything else is not ours to judge (the Go registry skips it too).
                    if paths.UPLOAD_ID.fullmatch(name):
                        yield repo, name
    except StorageError as exc:
        report.errors.append(f"walking repositories: {exc}")


async def _started_at(driver: StorageDriver, repo: str, upload_id: str) -> dt.datetime | None:
    """When the session started: its `startedat`, else when it last changed."""
    try:
        text = await driver.get_content(paths.upload_started_at(repo, upload_id), 1024)
        started = dt.datetime.fromisoformat(text.decode("ascii").strip())
    except (FileNotFound, TooLarge, UnicodeDecodeError, ValueError):
        pass
    else:
        return started if started.tzinfo is not None else started.replace(tzinfo=dt.UTC)
    latest: dt.datetime | None = None
    for path in (paths.upload_dir(repo, upload_id), paths.upload_data(repo, upload_id)):
        with contextlib.suppress(FileNotFound):
            modified = (await driver.stat(path)).modified
            latest = modified if latest is None else max(latest, modified)
    return latest

"""The background upload purge each registry process runs (storage.maintenance.uploadpurging).

Like the Go registry's: a first run after a random delay, so instances
started together do not all walk the storage at once, then one every
`interval`. Purging is idempotent, so several instances over one root only
repeat each other's work.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random

from authcore.duration import format_duration
from registry_proxy.config import UploadPurgingConfig
from registry_proxy.storage import Storage
from registry_proxy.storage.purge import PurgeReport, purge_uploads

__all__ = ["first_delay", "purge_once", "run_purger"]

log = logging.getLogger("registry_proxy.purge")

# The Go registry waits up to an hour before its first purge.
MAX_FIRST_DELAY = dt.timedelta(hours=1)


def first_delay(interval: dt.timedelta, rng: random.Random) -> float:
    """Seconds before the first purge: random, at most an interval or an hour."""
    return rng.uniform(0, min(interval, MAX_FIRST_DELAY).total_seconds())


async def purge_once(storage: Storage, settings: UploadPurgingConfig) -> PurgeReport:
    older_than = dt.datetime.now(dt.UTC) - settings.age
    log.info(
        "upload purge starting",
        extra={"older_than": older_than.isoformat(), "dryrun": settings.dryrun},
    )
    report = await purge_uploads(storage.driver, older_than, dry_run=settings.dryrun)
    for upload in report.purged:
        log.info(
            "upload session would be purged" if settings.dryrun else "upload session purged",
            extra={
                "repository": upload.repository,
                "upload": upload.upload_id,
                "startedat": upload.started_at.isoformat(),
            },
        )
    for error in report.errors:
        log.warning("upload session not purged", extra={"reason": error})
    log.info(
        "upload purge finished",
        extra={
            "purged": len(report.purged),
            "errors": len(report.errors),
            "dryrun": settings.dryrun,
        },
    )
    return report


async def run_purger(
    storage: Storage, settings: UploadPurgingConfig, rng: random.Random | None = None
) -> None:
    """Purge forever (until cancelled); a failed run is logged and the next one still comes."""
    delay = first_delay(settings.interval, rng or random.SystemRandom())
    log.info(
        "upload purge scheduled",
        extra={
            "first_in": format_duration(dt.timedelta(seconds=round(delay))),
            "interval": format_duration(settings.interval),
        },
    )
    await asyncio.sleep(delay)
    while True:
        try:
            await purge_once(storage, settings)
        except Exception:
            log.warning("upload purge failed", exc_info=True)
        await asyncio.sleep(settings.interval.total_seconds())

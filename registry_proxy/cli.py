"""The `registry-proxy` command line."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from authcore.cli import CommandLine, config_file, run
from registry_proxy.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from registry_proxy.storage import Storage

__all__ = ["main"]


def _config(args: argparse.Namespace) -> Config:
    from registry_proxy.storage import require_driver

    config = load_config(
        config_file(args.config, "registry-proxy", "REGISTRY_PROXY_CONFIG", "registry.yaml")
    )
    # Before the server starts, so a missing library is a message, not its traceback.
    require_driver(config.storage.driver)
    return config


def cmd_serve(args: argparse.Namespace) -> None:
    from authcore.jsonlog import configure_logging
    from authcore.serve import serve
    from registry_proxy.app import create_app
    from registry_proxy.context import KEYS
    from registry_proxy.errors import refusal

    config = _config(args)
    configure_logging(config.log.level, KEYS)
    app = create_app(config)
    serve(
        app,
        config.http,
        section="http",
        refusal=refusal,
        graceful_shutdown=config.http.draintimeout,
    )


def cmd_gc(args: argparse.Namespace) -> None:
    from authcore.duration import format_duration
    from registry_proxy.storage import Storage, make_driver
    from registry_proxy.storage.gc import collect
    from registry_proxy.storage.purge import purge_uploads

    config = _config(args)
    if config.storage.driver == "memory":
        raise ConfigError("garbage collection needs persistent storage")
    storage = Storage(make_driver(config.storage.driver, **config.storage.driver_options()))

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    _expire_cached(config, storage, args.dry_run, progress)
    report = asyncio.run(
        collect(
            storage,
            dry_run=args.dry_run,
            delete_untagged=args.delete_untagged,
            progress=progress,
        )
    )
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"{report.marked} blobs marked, {verb} {report.swept} blobs "
        f"({report.bytes_freed} bytes) and {report.manifests_deleted} untagged manifests"
    )
    age = config.storage.maintenance.uploadpurging.age
    older_than = dt.datetime.now(dt.UTC) - age
    purged = asyncio.run(purge_uploads(storage.driver, older_than, dry_run=args.dry_run))
    for upload in purged.purged:
        progress(
            f"{upload.repository}: upload session {upload.upload_id} started {upload.started_at}"
        )
    for error in purged.errors:
        progress(f"upload session not purged: {error}")
    verb = "would purge" if args.dry_run else "purged"
    print(f"{verb} {len(purged.purged)} upload sessions older than {format_duration(age)}")


def _expire_cached(
    config: Config, storage: Storage, dry_run: bool, progress: Callable[[str], None]
) -> None:
    """Unlink upstream content past its `ttl`, then the least recently used past
    `storage.proxycache.max_bytes`, for the sweep that follows to delete."""
    from registry_proxy.storage.cache_expiry import expire_and_evict
    from registry_proxy.upstreams.cached_names import ConfiguredNames

    names = ConfiguredNames.of(config)
    if not names:
        return
    now = dt.datetime.now(dt.UTC)
    max_bytes = config.storage.proxycache.max_bytes
    report = asyncio.run(
        expire_and_evict(storage, names, max_bytes, now, dry_run=dry_run, progress=progress)
    )
    verb = "would unlink" if dry_run else "unlinked"
    for what, removed in (("expired", report.expired), ("evicted", report.evicted)):
        print(
            f"{verb} {removed.manifests} manifests and {removed.layers} layers of upstream "
            f"content {what} ({removed.bytes} bytes no upstream repository holds any more)"
        )


def build_parser() -> argparse.ArgumentParser:
    cli = CommandLine("registry-proxy", __doc__, "REGISTRY_PROXY_CONFIG")
    cli.command("serve", cmd_serve, "run the registry")
    gc = cli.command(
        "gc",
        cmd_gc,
        "unlink upstream content past its ttl or storage.proxycache.max_bytes, delete "
        "blobs no manifest references, and upload sessions older than "
        "storage.maintenance.uploadpurging.age",
    )
    gc.add_argument("--dry-run", action="store_true", help="report, change nothing")
    gc.add_argument(
        "--delete-untagged", action="store_true", help="also delete manifests no tag points to"
    )
    return cli.parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv, (ConfigError,))


if __name__ == "__main__":
    sys.exit(main())

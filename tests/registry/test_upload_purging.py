"""storage.maintenance.uploadpurging: its configuration, and the purge in a real registry process
and in `registry-proxy gc`."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from registry_proxy.config import ConfigError, load_config
from registry_proxy.purger import MAX_FIRST_DELAY, first_delay
from tests.support.minter import Minter, log_problems
from tests.support.registry_proxy import RegistryProxy

REPO = "team/app"
SCOPE = f"repository:{REPO}:pull,push,delete"
PURGE_KEY = "storage.maintenance.uploadpurging"


def config_file(tmp_path: Path, purging: dict[str, Any] | None) -> Path:
    storage: dict[str, Any] = {"filesystem": {"rootdirectory": "data"}}
    if purging is not None:
        storage["maintenance"] = {"uploadpurging": purging}
    path = tmp_path / "config.yaml"
    auth = {"realm": "http://127.0.0.1:1/token", "service": "s", "issuer": "i", "jwks": "k.json"}
    path.write_text(yaml.safe_dump({"storage": storage, "auth": {"token": auth}}))
    return path


def test_defaults_are_the_go_registrys(tmp_path: Path) -> None:
    purging = load_config(config_file(tmp_path, None), {}).storage.maintenance.uploadpurging
    assert (purging.enabled, purging.age, purging.interval, purging.dryrun) == (
        True,
        dt.timedelta(hours=168),
        dt.timedelta(hours=24),
        False,
    )


def test_settings_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = config_file(tmp_path, {"enabled": False, "age": "2h", "interval": "1h30m"})
    purging = load_config(path, {}).storage.maintenance.uploadpurging
    assert (purging.enabled, purging.age, purging.interval, purging.dryrun) == (
        False,
        dt.timedelta(hours=2),
        dt.timedelta(minutes=90),
        False,
    )
    env = {
        "REGISTRY_PROXY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE": "90s",
        "REGISTRY_PROXY_STORAGE_MAINTENANCE_UPLOADPURGING_DRYRUN": "true",
    }
    purging = load_config(path, env).storage.maintenance.uploadpurging
    assert (purging.age, purging.dryrun) == (dt.timedelta(seconds=90), True)


@pytest.mark.parametrize(
    ("purging", "key"),
    [
        ({"age": "7d"}, "age"),
        ({"age": 3600}, "age"),
        ({"age": "0s"}, "age"),
        ({"interval": "-1h"}, "interval"),
        ({"interval": "soon"}, "interval"),
        ({"enabled": "perhaps"}, "enabled"),
        ({"dryrun": 2}, "dryrun"),
        ({"agee": "1h"}, "agee"),
    ],
)
def test_bad_settings_name_their_key(tmp_path: Path, purging: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"{PURGE_KEY}\.{key}"):
        load_config(config_file(tmp_path, purging), {})


def test_the_first_purge_comes_after_a_random_delay_of_at_most_an_interval_or_an_hour() -> None:
    rng = random.Random(7)
    short = [first_delay(dt.timedelta(seconds=2), rng) for _ in range(200)]
    assert all(0 <= d <= 2 for d in short) and len(set(short)) > 100
    long = [first_delay(dt.timedelta(hours=24), rng) for _ in range(200)]
    assert all(0 <= d <= MAX_FIRST_DELAY.total_seconds() for d in long)
    assert max(long) > 600  # Spread over the hour, as the Go registry spreads its first run.


# -- through a real registry process ---------------------------------------------------


@pytest.fixture(scope="module")
def minter(tmp_path_factory: pytest.TempPathFactory) -> Minter:
    return Minter(tmp_path_factory.mktemp("purge-keys"))


def proxy(tmp_path: Path, minter: Minter, **purging: object) -> RegistryProxy:
    extra = {"storage": {"maintenance": {"uploadpurging": purging}}} if purging else None
    return RegistryProxy(tmp_path / "proxy", minter.token_auth, root=tmp_path / "root", extra=extra)


def start_session(client: httpx.Client, minter: Minter, data: bytes) -> str:
    r = client.post(f"/v2/{REPO}/blobs/uploads/", headers=minter.headers(SCOPE))
    assert r.status_code == 202, r.text
    location = r.headers["location"]
    r = client.patch(location, content=data, headers=minter.headers(SCOPE))
    assert r.status_code == 202, r.text
    return str(r.headers["docker-upload-uuid"])


def session_dir(root: Path, upload_id: str) -> Path:
    return root / "docker/registry/v2/repositories" / REPO / "_uploads" / upload_id


def backdate(root: Path, upload_id: str, days: int) -> None:
    started = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    (session_dir(root, upload_id) / "startedat").write_text(started.strftime("%Y-%m-%dT%H:%M:%SZ"))


def wait_for_log(
    registry: RegistryProxy, message: str, upload_id: str, timeout: float = 20
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in registry.log_text().splitlines():
            entry = json.loads(line) if line.startswith("{") else {}
            if entry.get("msg") == message and entry.get("upload") == upload_id:
                return
        time.sleep(0.1)
    raise AssertionError(f"no {message!r} for {upload_id} in:\n{registry.log_tail()}")


def finish(client: httpx.Client, minter: Minter, upload_id: str, rest: bytes, whole: bytes) -> None:
    location = f"/v2/{REPO}/blobs/uploads/{upload_id}"
    digest = "sha256:" + hashlib.sha256(whole).hexdigest()
    r = client.put(f"{location}?digest={digest}", content=rest, headers=minter.headers(SCOPE))
    assert r.status_code == 201, r.text
    r = client.get(f"/v2/{REPO}/blobs/{digest}", headers=minter.headers(SCOPE))
    assert r.status_code == 200 and r.content == whole


@pytest.fixture
def registry_log_is_clean(real_peer: None) -> Iterator[list[RegistryProxy]]:
    started: list[RegistryProxy] = []
    yield started
    for registry in started:
        problems = log_problems(registry.log_text())
        assert not problems, "\n".join(problems[:5])


def test_the_registry_purges_old_sessions_and_keeps_young_ones(
    tmp_path: Path, minter: Minter, registry_log_is_clean: list[RegistryProxy]
) -> None:
    registry = proxy(tmp_path, minter, age="1h", interval="1s")
    registry_log_is_clean.append(registry)
    with registry, httpx.Client(base_url=registry.url, trust_env=False) as client:
        young = start_session(client, minter, b"young ")
        old = start_session(client, minter, b"old ")
        backdate(registry.root, old, days=2)
        wait_for_log(registry, "upload session purged", old)
        assert not session_dir(registry.root, old).exists()
        r = client.get(f"/v2/{REPO}/blobs/uploads/{old}", headers=minter.headers(SCOPE))
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
        # Purges keep coming (every second), and the young upload still completes.
        time.sleep(1.5)
        r = client.get(f"/v2/{REPO}/blobs/uploads/{young}", headers=minter.headers(SCOPE))
        assert r.status_code == 204 and r.headers["range"] == "0-5"
        finish(client, minter, young, b"and done", b"young and done")


def test_a_dry_run_only_logs(
    tmp_path: Path, minter: Minter, registry_log_is_clean: list[RegistryProxy]
) -> None:
    registry = proxy(tmp_path, minter, age="1h", interval="1s", dryrun=True)
    registry_log_is_clean.append(registry)
    with registry, httpx.Client(base_url=registry.url, trust_env=False) as client:
        old = start_session(client, minter, b"old but kept ")
        backdate(registry.root, old, days=30)
        before = {p.name: p.read_bytes() for p in session_dir(registry.root, old).iterdir()}
        wait_for_log(registry, "upload session would be purged", old)
        after = {p.name: p.read_bytes() for p in session_dir(registry.root, old).iterdir()}
        assert after == before
        finish(client, minter, old, b"anyway", b"old but kept anyway")


def test_a_disabled_purge_never_runs(
    tmp_path: Path, minter: Minter, registry_log_is_clean: list[RegistryProxy]
) -> None:
    registry = proxy(tmp_path, minter, enabled=False, age="1h", interval="1s")
    registry_log_is_clean.append(registry)
    with registry, httpx.Client(base_url=registry.url, trust_env=False) as client:
        old = start_session(client, minter, b"old ")
        backdate(registry.root, old, days=30)
        time.sleep(2.5)
        assert session_dir(registry.root, old).is_dir()
    assert "upload purge" not in registry.log_text()


@pytest.mark.peers
def test_gc_purges_old_sessions_too(tmp_path: Path, minter: Minter) -> None:
    registry = proxy(tmp_path, minter, enabled=False)
    with registry, httpx.Client(base_url=registry.url, trust_env=False) as client:
        young = start_session(client, minter, b"young ")
        old = start_session(client, minter, b"old ")
    backdate(registry.root, old, days=8)  # The default age is a week.

    dry = registry.gc("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would purge 1 upload sessions older than 168h0m0s" in dry.stdout.splitlines()
    assert session_dir(registry.root, old).is_dir()

    done = registry.gc()
    assert done.returncode == 0, done.stderr
    assert "purged 1 upload sessions older than 168h0m0s" in done.stdout.splitlines()
    assert old in done.stderr
    assert not session_dir(registry.root, old).exists()
    assert session_dir(registry.root, young).is_dir()
    with registry, httpx.Client(base_url=registry.url, trust_env=False) as client:
        finish(client, minter, young, b"still", b"young still")

"""Cached upstream content expires and is evicted by `registry-proxy gc`, through our registry
in front of a fake upstream on 127.0.0.1.

What was cached longer ago than the upstream's `ttl` goes (manifest, tags, blobs), and
with `storage.proxycache.max_bytes` the least recently used image goes first; a local
repository's content stays, whatever the bookkeeping files say; the next pull fetches
again, byte-identical. Two collections at once, and a collection racing pulls, leave
every pull whole.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from starlette.testclient import TestClient

from registry_proxy.app import create_app
from registry_proxy.cli import main
from registry_proxy.config import Config, load_config
from registry_proxy.reference import Digest
from registry_proxy.storage import Storage
from registry_proxy.storage.cache_expiry import expire_and_evict
from registry_proxy.storage.cache_uses import LAYER, CacheUses, last_used
from registry_proxy.storage.filesystem import FilesystemDriver
from registry_proxy.storage.gc import collect
from registry_proxy.storage.memory import MemoryDriver
from registry_proxy.upstreams.cached_names import ConfiguredNames
from tests.registry.conftest import Mint, token_auth
from tests.support.fake_upstream import Answer, FakeUpstream, Seen

OCI = "application/vnd.oci.image.manifest.v1+json"
V2 = "docker/registry/v2"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Image:
    manifest: bytes
    blobs: dict[str, bytes]  # config and layers

    @property
    def digest(self) -> str:
        return _digest(self.manifest)

    @property
    def size(self) -> int:
        return len(self.manifest) + sum(map(len, self.blobs.values()))


def image(seed: str, *, shared: bytes | None = None, layer_bytes: int = 10_000) -> Image:
    config = json.dumps({"seed": seed}).encode()
    layers = [(seed.encode() * layer_bytes)[:layer_bytes]]
    if shared is not None:
        layers.append(shared)

    def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
        return {"mediaType": media_type, "digest": _digest(data), "size": len(data)}

    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI,
            "config": descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", x) for x in layers],
        }
    ).encode()
    return Image(manifest, {_digest(b): b for b in [config, *layers]})


class Registry:
    """The images the fake upstream serves: `<repo>:<tag>` and its blobs."""

    def __init__(self) -> None:
        self.images: dict[tuple[str, str], Image] = {}

    def answer(self, seen: Seen) -> Answer:
        path = seen.path.split("?", 1)[0]
        if "/manifests/" in path:
            repo, reference = path.removeprefix("/v2/").split("/manifests/")
            for (name, tag), found in self.images.items():
                if name == repo and reference in (tag, found.digest):
                    headers = {"Content-Type": OCI, "Docker-Content-Digest": found.digest}
                    return Answer(200, headers, found.manifest)
        if "/blobs/" in path:
            wanted = path.rsplit("/", 1)[1]
            for found in self.images.values():
                if wanted in found.blobs:
                    return Answer(
                        200, {"Content-Type": "application/octet-stream"}, found.blobs[wanted]
                    )
        return Answer(404, {"Content-Type": "application/json"}, b'{"errors":[]}')


@dataclass
class Stack:
    client: TestClient
    upstream: FakeUpstream
    served: Registry
    root: Path
    config_file: Path
    mint: Mint

    def pull(self, repo: str, tag: str) -> dict[str, bytes]:
        """Manifest and blobs of `up/<repo>:<tag>` through ours, by digest."""
        headers = {**self.mint(f"repository:up/{repo}:pull"), "Accept": OCI}
        got = self.client.get(f"/v2/up/{repo}/manifests/{tag}", headers=headers)
        assert got.status_code == 200, got.text
        pulled = {_digest(got.content): got.content}
        doc = json.loads(got.content)
        for descriptor in [doc["config"], *doc["layers"]]:
            blob = self.client.get(f"/v2/up/{repo}/blobs/{descriptor['digest']}", headers=headers)
            assert blob.status_code == 200, blob.text
            pulled[descriptor["digest"]] = blob.content
        return pulled

    def upstream_gets(self) -> list[str]:
        return [s.path for s in self.upstream.seen if s.method == "GET"]

    def stored(self) -> set[str]:
        """The digests of the blobs in storage."""
        found = (self.root / V2 / "blobs").glob("sha256/*/*/data")
        return {f"sha256:{p.parent.name}" for p in found}

    def gc(self, capsys: pytest.CaptureFixture[str], *options: str) -> str:
        assert main(["gc", "--config", str(self.config_file), *options]) == 0
        return capsys.readouterr().out


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def _config(storage_root: Path, keys_dir: Path, origin: str, **settings: Any) -> dict[str, Any]:
    max_bytes = settings.pop("max_bytes", None)
    storage: dict[str, Any] = {"filesystem": {"rootdirectory": str(storage_root)}}
    if max_bytes is not None:
        storage["proxycache"] = {"max_bytes": max_bytes}
    return {
        "storage": storage,
        "auth": token_auth(keys_dir),
        "upstreams": [{"prefix": "up", "url": origin, "timeout": 5, **settings}],
    }


@pytest.fixture
def stacked(
    upstream: FakeUpstream, storage_root: Path, keys_dir: Path, tmp_path: Path, mint: Mint
) -> Iterator[Any]:
    """`with stacked(ttl="2s", max_bytes=...) as stack:` ours in front of the upstream."""

    @contextmanager
    def make(**settings: Any) -> Iterator[Stack]:
        raw = _config(storage_root, keys_dir, upstream.origin, **settings)
        config_file = tmp_path / "registry.yaml"
        config_file.write_text(json.dumps(raw))
        served = Registry()
        upstream.answer = served.answer
        with TestClient(create_app(Config.model_validate(raw))) as client:
            yield Stack(client, upstream, served, storage_root, config_file, mint)

    yield make


def _store_local(root: Path, repo: str, local: Image) -> None:
    """A local repository's image, pushed as a client would (straight into storage)."""

    async def push() -> None:
        storage = Storage(FilesystemDriver(root))

        async def chunks(data: bytes) -> Any:
            yield data

        for digest, data in local.blobs.items():
            await storage.uploads.put(repo, Digest.parse(digest), chunks(data))
        await storage.manifests.put(repo, "v1", local.manifest, OCI)

    asyncio.run(push())


def _collect(root: Path, config_file: Path, now: dt.datetime) -> Any:
    """The collection `gc` runs, at `now`, on a storage object of its own."""

    async def run() -> Any:
        storage = Storage(FilesystemDriver(root))
        names = ConfiguredNames.of(load_config(config_file))
        report = await expire_and_evict(storage, names, None, now)
        await collect(storage)
        return report

    return asyncio.run(run())


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


SHARED = b"a layer the local repository has too " * 300


def test_content_past_its_ttl_is_removed_by_gc_and_fetched_again_byte_identical(
    stacked: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with stacked(ttl="2s") as stack:
        remote = image("expiring", shared=SHARED)
        stack.served.images[("team/app", "v1")] = remote
        local = image("local", shared=SHARED)
        _store_local(stack.root, "mine/app", local)
        first = stack.pull("team/app", "v1")
        assert first == {remote.digest: remote.manifest, **remote.blobs}
        assert {remote.digest, *remote.blobs} <= stack.stored()

        # Not yet past its ttl: nothing goes.
        out = stack.gc(capsys)
        assert "unlinked 0 manifests and 0 layers of upstream content expired" in out
        assert {remote.digest, *remote.blobs} <= stack.stored()

        time.sleep(2.2)
        out = stack.gc(capsys)
        # Its config and two layers (one of them the local repository's too).
        assert "unlinked 1 manifests and 3 layers of upstream content expired" in out, out
        stored = stack.stored()
        gone = {remote.digest, *remote.blobs} - {_digest(SHARED)}
        assert not gone & stored
        # The local repository's blobs stay, the one it shares with the upstream image too.
        assert {local.digest, *local.blobs} <= stored
        tags = stack.root / V2 / "repositories/up/team/app/_manifests/tags"
        assert not tags.exists() or not any(tags.iterdir())

        before = len(stack.upstream_gets())
        again = stack.pull("team/app", "v1")
        assert again == first
        fetched = stack.upstream_gets()[before:]
        assert any("/manifests/" in path for path in fetched)
        # What gc removed is fetched again; the layer the local repository kept is only
        # confirmed at the upstream (a HEAD) and linked.
        refetched = {path.rsplit("/", 1)[-1] for path in fetched if "/blobs/" in path}
        assert refetched == set(remote.blobs) - {_digest(SHARED)}
        assert {remote.digest, *remote.blobs} <= stack.stored()


def test_past_max_bytes_the_least_recently_used_image_goes_first(
    stacked: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    one, two, three = image("one"), image("two"), image("three")
    with stacked(ttl="0", max_bytes=one.size + three.size) as stack:
        for name, each in (("one", one), ("two", two), ("three", three)):
            stack.served.images[(f"team/{name}", "v1")] = each
        for name in ("one", "two", "three"):
            stack.pull(f"team/{name}", "v1")
            time.sleep(0.05)  # a link's modification time orders what was cached when
        stack.pull("team/one", "v1")  # used again: now the most recent

        out = stack.gc(capsys, "--dry-run")
        assert "would unlink 1 manifests and 2 layers of upstream content evicted" in out, out
        assert {two.digest, *two.blobs} <= stack.stored()

        out = stack.gc(capsys)
        assert f"unlinked 1 manifests and 2 layers of upstream content evicted ({two.size} " in out
        stored = stack.stored()
        assert not {two.digest, *two.blobs} & stored
        assert {one.digest, *one.blobs, three.digest, *three.blobs} <= stored
        # Within the bound now: a second run removes nothing.
        assert "unlinked 0 manifests and 0 layers of upstream content evicted" in stack.gc(capsys)
        assert stack.pull("team/two", "v1") == {two.digest: two.manifest, **two.blobs}


def test_a_dry_run_changes_nothing(stacked: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with stacked(ttl="1s", max_bytes=0) as stack:
        remote = image("dry")
        stack.served.images[("team/app", "v1")] = remote
        stack.pull("team/app", "v1")
        _store_local(stack.root, "mine/app", image("dry-local"))
        time.sleep(1.1)
        before = _files(stack.root)
        out = stack.gc(capsys, "--dry-run")
        assert "would unlink 1 manifests and 2 layers of upstream content expired" in out
        assert _files(stack.root) == before


def test_two_collections_at_once_and_a_collection_racing_pulls(stacked: Any) -> None:
    with stacked(ttl="1h") as stack:
        remote = image("racing", shared=SHARED)
        stack.served.images[("team/app", "v1")] = remote
        local = image("racing-local", shared=SHARED)
        _store_local(stack.root, "mine/app", local)
        expected = {remote.digest: remote.manifest, **remote.blobs}
        assert stack.pull("team/app", "v1") == expected
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)

        async def twice() -> None:
            names = ConfiguredNames.of(
                Config.model_validate(json.loads(stack.config_file.read_text()))
            )
            one, two = Storage(FilesystemDriver(stack.root)), Storage(FilesystemDriver(stack.root))
            await asyncio.gather(
                expire_and_evict(one, names, None, later), expire_and_evict(two, names, None, later)
            )
            await asyncio.gather(collect(one), collect(two))

        asyncio.run(twice())
        assert not ({remote.digest, *remote.blobs} - {_digest(SHARED)}) & stack.stored()
        assert {local.digest, *local.blobs} <= stack.stored()

        # Collections (each expiring everything) while pulls go on: every pull is whole.
        stop = threading.Event()
        errors: list[BaseException] = []
        runs = 0

        def collecting() -> None:
            nonlocal runs
            try:
                while not stop.is_set():
                    _collect(stack.root, stack.config_file, later)
                    runs += 1
            except BaseException as exc:  # the test reports it
                errors.append(exc)

        thread = threading.Thread(target=collecting)
        thread.start()
        try:
            deadline = time.monotonic() + 4
            pulls = 0
            while time.monotonic() < deadline or pulls < 10:
                assert stack.pull("team/app", "v1") == expected
                pulls += 1
        finally:
            stop.set()
            thread.join(30)
        assert errors == [] and runs >= 1
        assert {local.digest, *local.blobs} <= stack.stored()


@pytest.mark.parametrize(
    "record",
    [b"not a time", b"\xff\xfe garbage", b"9" * 2_000_000, b"2999-01-01T00:00:00+00:00", None],
)
def test_hostile_bookkeeping_neither_stops_gc_nor_touches_local_content(
    stacked: Any, capsys: pytest.CaptureFixture[str], record: bytes | None
) -> None:
    with stacked(ttl="0", max_bytes=0) as stack:
        remote = image("hostile", shared=SHARED)
        stack.served.images[("team/app", "v1")] = remote
        local = image("hostile-local", shared=SHARED)
        _store_local(stack.root, "mine/app", local)
        stack.pull("team/app", "v1")
        stack.pull("team/app", "v1")  # records its use
        cache = stack.root / V2 / "_proxycache"
        used = sorted(cache.rglob("used"))
        assert used, "a pull from the cache records its use"
        for path in used:
            if record is None:
                path.unlink()
            else:
                path.write_bytes(record)
        # Records for the local repository, a directory where a record goes, names of nothing.
        for digest in local.blobs:
            forged = cache / "mine/app/_layers/sha256" / digest.removeprefix("sha256:") / "used"
            forged.parent.mkdir(parents=True, exist_ok=True)
            forged.write_bytes(b"1970-01-01T00:00:00+00:00")
        (cache / "up/team/app/_layers/sha256/not-hex/used").mkdir(parents=True)
        (cache / "up/team/gone/_manifests/md5/abc").mkdir(parents=True)
        local_files = {k: v for k, v in _files(stack.root).items() if "repositories/mine/" in k}

        out = stack.gc(capsys)
        assert "unlinked 1 manifests and 3 layers of upstream content evicted" in out, out
        assert {local.digest, *local.blobs} <= stack.stored()
        assert {
            k: v for k, v in _files(stack.root).items() if "repositories/mine/" in k
        } == local_files
        assert not ({remote.digest, *remote.blobs} - {_digest(SHARED)}) & stack.stored()
        assert stack.pull("team/app", "v1") == {remote.digest: remote.manifest, **remote.blobs}


def test_a_use_is_written_at_most_once_per_interval_per_instance() -> None:
    asyncio.run(_uses_throttled())


async def _uses_throttled() -> None:
    driver = MemoryDriver()
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    digest = Digest.parse(_digest(b"x"))
    uses = CacheUses(driver, lambda: now)
    await uses.used("up/app", LAYER, digest)
    assert await last_used(driver, "up/app", LAYER, digest) == now
    first = now
    now += dt.timedelta(minutes=9)
    await uses.used("up/app", LAYER, digest)
    assert await last_used(driver, "up/app", LAYER, digest) == first
    now += dt.timedelta(minutes=2)
    await uses.used("up/app", LAYER, digest)
    assert await last_used(driver, "up/app", LAYER, digest) == now


def test_max_bytes_is_a_count_of_bytes(keys_dir: Path) -> None:
    base = {"auth": token_auth(keys_dir)}
    for bad in (-1, "lots", 1.5):
        with pytest.raises(ValidationError):
            Config.model_validate({**base, "storage": {"proxycache": {"max_bytes": bad}}})
    config = Config.model_validate({**base, "storage": {"proxycache": {"max_bytes": 10}}})
    assert config.storage.proxycache.max_bytes == 10
    assert Config.model_validate(base).storage.proxycache.max_bytes is None


def test_the_configured_names_are_the_upstreams_with_their_ttl(keys_dir: Path) -> None:
    base = {"auth": token_auth(keys_dir)}
    upstreams = [
        {"prefix": "hub", "url": "http://127.0.0.1:1", "ttl": "1h"},
        {"prefix": "hub/deep", "url": "http://127.0.0.1:2", "ttl": "0"},
        {"prefix": "gw", "url": "http://127.0.0.1:3", "cache": False},
    ]
    names = ConfiguredNames.of(Config.model_validate({**base, "upstreams": upstreams}))
    assert names.owns("hub/alpine") and names.owns("hub") and names.owns("gw/x")
    assert not names.owns("hubble/x") and not names.owns("mine/app")
    assert names.ttl("hub/alpine") == dt.timedelta(hours=1)
    assert names.ttl("hub/deep/x") is None  # the longest prefix decides, as routing does
    proxy = {**base, "proxy": {"remoteurl": "http://127.0.0.1:1", "ttl": "3h"}}
    everything = ConfiguredNames.of(Config.model_validate(proxy))
    assert everything.owns("any/name") and everything.ttl("x") == dt.timedelta(hours=3)
    assert not ConfiguredNames.of(Config.model_validate(base))


def test_a_collection_killed_half_way_is_finished_by_the_next(stacked: Any) -> None:
    with stacked(ttl="1h") as stack:
        remote = image("killed")
        stack.served.images[("team/app", "v1")] = remote
        stack.pull("team/app", "v1")
        stack.pull("team/app", "v1")  # records its use
        repo = stack.root / V2 / "repositories/up/team/app"
        cache = stack.root / V2 / "_proxycache/up/team/app"
        config, layer = (
            json.loads(remote.manifest)["config"],
            json.loads(remote.manifest)["layers"][0],
        )
        # Killed after deleting the revision and one layer's link, before their records.
        shutil.rmtree(repo / "_manifests/revisions/sha256" / remote.digest.removeprefix("sha256:"))
        shutil.rmtree(repo / "_layers/sha256" / config["digest"].removeprefix("sha256:"))
        assert (
            cache / "_layers/sha256" / config["digest"].removeprefix("sha256:") / "used"
        ).exists()

        _collect(stack.root, stack.config_file, dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))
        assert not {remote.digest, *remote.blobs} & stack.stored()
        assert not list(cache.rglob("used"))
        assert not (repo / "_layers/sha256" / layer["digest"].removeprefix("sha256:")).exists()
        assert stack.pull("team/app", "v1") == {remote.digest: remote.manifest, **remote.blobs}

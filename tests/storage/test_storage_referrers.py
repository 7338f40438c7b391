"""The referrers index in pages: stored descriptors, bounded pages, every referrer exactly once."""

from __future__ import annotations

import json
from typing import Any

import pytest

from registry_proxy.reference import Digest
from registry_proxy.storage import Storage, paths
from registry_proxy.storage.referrers import PAGE_BYTES
from tests.storage.helpers import OCI_MANIFEST, image_manifest, push_blob, push_image

pytestmark = pytest.mark.anyio

REPO = "team/app"
EMPTY = "application/vnd.oci.empty.v1+json"


async def push_referrer(
    storage: Storage, subject: Digest, index: int, artifact_type: str, pad: int = 0
) -> Digest:
    annotations: dict[str, Any] = {"n": str(index)}
    if pad:
        annotations["pad"] = "x" * pad
    body = image_manifest(
        b"{}",
        [],
        config_type=EMPTY,
        artifactType=artifact_type,
        subject={"mediaType": OCI_MANIFEST, "digest": str(subject), "size": 1},
        annotations=annotations,
    )
    result = await storage.manifests.put(REPO, str(Digest.of(body)), body, OCI_MANIFEST)
    return result.digest


async def walk(storage: Storage, subject: Digest, **options: Any) -> list[list[dict[str, Any]]]:
    pages, after = [], None
    artifact_type = options.pop("artifact_type", None)
    for _ in range(100):
        page = await storage.referrers.page(REPO, subject, artifact_type, after, **options)
        pages.append([json.loads(raw) for raw in page.descriptors])
        if page.last is None:
            return pages
        after = page.last
    raise AssertionError("the pages never ended")


@pytest.fixture
async def subject(storage: Storage) -> Digest:
    await push_blob(storage, REPO, b"{}")
    _, digest, _ = await push_image(storage, REPO, "v1")
    return digest


async def test_pages_list_every_referrer_once_in_digest_order(
    storage: Storage, subject: Digest
) -> None:
    kinds = ["application/vnd.example.sig", "application/vnd.example.sbom"]
    pushed = [await push_referrer(storage, subject, i, kinds[i % 2]) for i in range(7)]
    pages = await walk(storage, subject, entries_limit=3)
    assert [len(p) for p in pages] == [3, 3, 1]
    listed = [d["digest"] for page in pages for d in page]
    assert listed == sorted(str(d) for d in pushed)

    sboms = await walk(storage, subject, artifact_type=kinds[1], entries_limit=2)
    assert [len(p) for p in sboms] == [2, 1]
    assert {d["artifactType"] for page in sboms for d in page} == {kinds[1]}
    assert [d["digest"] for p in sboms for d in p] == sorted(str(d) for d in pushed[1::2])

    # A filter that keeps little may end a page early, bounded by what it reads.
    scanned = await walk(storage, subject, artifact_type=kinds[1], scan_limit=2)
    assert [d["digest"] for p in scanned for d in p] == sorted(str(d) for d in pushed[1::2])
    assert all(len(p) <= 2 for p in scanned)


async def test_a_page_is_bounded_in_bytes_but_holds_at_least_one(
    storage: Storage, subject: Digest
) -> None:
    big = PAGE_BYTES * 6 // 10
    pushed = [await push_referrer(storage, subject, i, "application/x", pad=big) for i in range(3)]
    pages = await walk(storage, subject)
    assert [len(p) for p in pages] == [1, 1, 1]
    assert sorted(d["digest"] for p in pages for d in p) == sorted(map(str, pushed))
    assert all(len(p[0]["annotations"]["pad"]) == big for p in pages)


async def test_descriptors_are_stored_at_push_and_stale_entries_pass(
    storage: Storage, subject: Digest
) -> None:
    first = await push_referrer(storage, subject, 1, "application/x")
    second = await push_referrer(storage, subject, 2, "application/x")
    stored = await storage.driver.get_content(paths.referrer_descriptor(REPO, subject, first))
    assert json.loads(stored)["digest"] == str(first)

    # An entry from before descriptors were stored is described from its manifest.
    await storage.driver.delete(paths.referrer_descriptor(REPO, subject, first))
    [described] = [
        d for d in await storage.referrers.list(REPO, subject) if d["digest"] == str(first)
    ]
    assert described == json.loads(stored)

    # A referrer whose manifest went (deleted by another registry on this root) is passed over.
    await storage.driver.delete(paths.REVISIONS.directory(REPO, second))
    assert [d["digest"] for d in await storage.referrers.list(REPO, subject)] == [str(first)]


async def test_unknown_subjects_and_repositories_have_no_referrers(
    storage: Storage, subject: Digest
) -> None:
    assert (await storage.referrers.page(REPO, Digest.of(b"none"))).descriptors == []
    assert (await storage.referrers.page("no/such", subject)).descriptors == []
    page = await storage.referrers.page(REPO, subject, after="\u00e9" * 10)
    assert page.descriptors == [] and page.last is None

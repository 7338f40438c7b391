"""GET /v2/<name>/referrers/<digest> against a real process: paged by `Link`, bounded in
bytes and memory, and the rest of the API answered while large pages are served."""

from __future__ import annotations

import concurrent.futures
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from registry_proxy.storage.referrers import PAGE_BYTES
from tests.support.minter import Minter, log_problems, push_image, sha256
from tests.support.registry_proxy import RegistryProxy
from tests.support.tokenserver import resident_bytes

REPO = "team/app"
SCOPE = f"repository:{REPO}:pull,push"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MB = 1024 * 1024
# Ten indexes of about 3.6 MB with one subject: the attack review's load.
REFERRERS = 10
PAD = 3_600_000
LINK = re.compile(r'^<(/v2/[^>]+)>; rel="next"$')


@dataclass
class Pushed:
    registry: RegistryProxy
    minter: Minter
    subject: str
    referrers: list[str]
    kinds: dict[str, str]


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory, real_peer: None) -> Iterator[Pushed]:
    work = tmp_path_factory.mktemp("referrers")
    minter = Minter(work / "keys")
    registry = RegistryProxy(work / "proxy", minter.token_auth)
    with registry, httpx.Client(base_url=registry.url, trust_env=False, timeout=60) as client:
        headers = minter.headers(SCOPE)
        _, subject = push_image(client, REPO, "v1", headers)
        referrers, kinds = [], {}
        for index in range(REFERRERS):
            kind = f"application/vnd.example.kind-{index % 2}"
            body = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_INDEX,
                    "artifactType": kind,
                    "manifests": [],
                    "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
                    "annotations": {"n": str(index), "pad": "x" * PAD},
                }
            ).encode()
            digest = sha256(body)
            answer = client.put(
                f"/v2/{REPO}/manifests/{digest}",
                content=body,
                headers=headers | {"Content-Type": OCI_INDEX},
            )
            assert answer.status_code == 201, answer.text
            referrers.append(digest)
            kinds[digest] = kind
        yield Pushed(registry, minter, subject, referrers, kinds)
    problems = log_problems(registry.log_text())
    assert not problems, "\n".join(problems[:5])


def walk(pushed: Pushed, query: str = "") -> list[tuple[int, list[dict[str, object]]]]:
    """Every page, following `Link`: (body size, descriptors) each."""
    pages = []
    target: str | None = f"/v2/{REPO}/referrers/{pushed.subject}{query}"
    with httpx.Client(base_url=pushed.registry.url, trust_env=False, timeout=60) as client:
        for _ in range(REFERRERS + 2):
            if target is None:
                return pages
            answer = client.get(target, headers=pushed.minter.headers(SCOPE))
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"] == OCI_INDEX
            index = answer.json()
            assert (index["schemaVersion"], index["mediaType"]) == (2, OCI_INDEX)
            pages.append((len(answer.content), index["manifests"]))
            link = answer.headers.get("link")
            target = None
            if link is not None:
                match = LINK.match(link)
                assert match, link
                target = match.group(1)
    raise AssertionError("the pages never ended")


def test_pages_are_bounded_and_list_every_referrer_once(pushed: Pushed) -> None:
    pages = walk(pushed)
    listed = [d["digest"] for _, descriptors in pages for d in descriptors]
    assert listed == sorted(pushed.referrers)
    # Past its first descriptor a page holds at most PAGE_BYTES; one descriptor is < 4 MiB.
    assert all(size <= PAGE_BYTES + 4 * MB for size, _ in pages)
    assert len(pages) == REFERRERS
    for _, descriptors in pages:
        for descriptor in descriptors:
            assert descriptor["annotations"]["pad"] == "x" * PAD  # type: ignore[index]
            assert descriptor["artifactType"] == pushed.kinds[str(descriptor["digest"])]


def test_a_filter_is_kept_across_pages(pushed: Pushed) -> None:
    kind = "application/vnd.example.kind-1"
    pages = walk(pushed, f"?artifactType={kind}")
    listed = [d["digest"] for _, descriptors in pages for d in descriptors]
    assert listed == sorted(d for d in pushed.referrers if pushed.kinds[d] == kind)


def test_concurrent_walks_stay_bounded_and_the_api_keeps_answering(pushed: Pushed) -> None:
    pid = pushed.registry.pid
    before = resident_bytes(pid)
    peak = before
    answered = 0
    done = threading.Event()

    def poll() -> None:
        nonlocal peak, answered
        with httpx.Client(base_url=pushed.registry.url, trust_env=False, timeout=30) as client:
            while not done.is_set():
                answer = client.get("/v2/", headers=pushed.minter.headers(SCOPE))
                assert answer.status_code == 200
                answered += 1
                peak = max(peak, resident_bytes(pid))

    with concurrent.futures.ThreadPoolExecutor(max_workers=5) as pool:
        poller = pool.submit(poll)
        walks = [pool.submit(walk, pushed) for _ in range(4)]
        try:
            results = [w.result(timeout=240) for w in walks]
        finally:
            done.set()
        poller.result(timeout=60)
    for pages in results:
        assert [d["digest"] for _, ds in pages for d in ds] == sorted(pushed.referrers)
    # Four walks at once held 430 MB more when every call read whole manifests.
    assert peak - before < 150 * MB, (before, peak)
    assert answered > 0


@pytest.mark.parametrize(
    ("query", "status"),
    [("?last=" + "z" * 5000, 400), ("?last=%C3%A9t%C3%A9", 200), ("?last=", 200)],
)
def test_odd_last_values(pushed: Pushed, query: str, status: int) -> None:
    with httpx.Client(base_url=pushed.registry.url, trust_env=False) as client:
        answer = client.get(
            f"/v2/{REPO}/referrers/{pushed.subject}{query}",
            headers=pushed.minter.headers(SCOPE),
        )
    assert answer.status_code == status, answer.text
    if status == 400:
        assert answer.json()["errors"][0]["code"] == "PAGINATION_NUMBER_INVALID"

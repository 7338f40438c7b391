"""Tags list and catalog: content, lexical order, `n`, `last`, `Link` pagination."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.registry_client import RegistryClient, error_codes

if TYPE_CHECKING:
    from tests.conformance.conftest import Target

pytestmark = pytest.mark.e2e

TAGS = ["v10", "b", "A", "a", "v2", "Z", "1.0", "_x", "latest", "v1.0-rc_1", "B2"]
REPOS = [f"alice/cat-{n}" for n in ("zeta", "alpha", "a-b", "a.b", "a_b", "a", "m/sub", "m", "m-x")]


def lexical(items: list[str]) -> bool:
    """Lexical (case-insensitive) or ASCIIbetical order, as the spec allows either."""
    return items in (sorted(items), sorted(items, key=lambda s: (s.lower(), s)))


def tag_repo(client: RegistryClient, repo: str, tags: list[str]) -> None:
    image = client.push_image(repo)
    shuffled = list(tags)
    random.shuffle(shuffled)
    for tag in shuffled:
        client.push_manifest(repo, tag, image.manifest, image.media_type)


def next_link(response: httpx.Response) -> str | None:
    link = response.links.get("next")
    return link["url"] if link else None


@pytest.fixture(scope="module")
def tagged(target: Target) -> str:
    """A repository with every tag of TAGS (pushed in random order)."""
    repo = "alice/tagged"
    tag_repo(target.registry("alice"), repo, TAGS)
    return repo


def test_tags_list(alice: RegistryClient, tagged: str) -> None:
    response = alice.tags(tagged)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["name"] == tagged
    assert sorted(body["tags"]) == sorted(TAGS)


@pytest.mark.requires("strict-tags-order")
def test_tags_are_in_lexical_order(alice: RegistryClient, tagged: str) -> None:
    tags = alice.tags(tagged).json()["tags"]
    assert sorted(tags) == sorted(TAGS)
    assert lexical(tags), tags


@pytest.mark.requires("strict-tags-order", "strict-tags-pagination")
@pytest.mark.parametrize("n", [1, 3, 4, len(TAGS) - 1])
def test_tags_n_and_link_pagination(alice: RegistryClient, tagged: str, n: int) -> None:
    full = alice.tags(tagged).json()["tags"]
    response = alice.tags(tagged, n=n)
    assert response.status_code == 200
    page = response.json()["tags"]
    # Exactly n, unless a Link header says there is more.
    assert len(page) == n or (len(page) < n and next_link(response))
    assert page == full[: len(page)]
    assert next_link(response), "more tags remain: a Link rel=next is due"
    assert alice.follow(response, "tags") == full


@pytest.mark.requires("strict-tags-order", "strict-tags-pagination")
def test_tags_last_is_exclusive(alice: RegistryClient, tagged: str) -> None:
    full = alice.tags(tagged).json()["tags"]
    for index in (0, 4, len(full) - 1):
        last = full[index]
        after = alice.tags(tagged, last=last).json()["tags"]
        assert after == full[index + 1 :]
        limited = alice.tags(tagged, n=2, last=last)
        assert limited.json()["tags"] == full[index + 1 : index + 3]


@pytest.mark.requires("strict-tags-pagination")
def test_tags_n_zero_is_an_empty_list(alice: RegistryClient, tagged: str) -> None:
    response = alice.tags(tagged, n=0)
    assert response.status_code == 200
    assert response.json()["tags"] == []
    assert "link" not in response.headers


@pytest.mark.requires("strict-tags-pagination")
def test_tags_n_larger_than_the_list(alice: RegistryClient, tagged: str) -> None:
    response = alice.tags(tagged, n=1000)
    assert response.status_code == 200
    assert sorted(response.json()["tags"]) == sorted(TAGS)
    assert "link" not in response.headers


def test_tags_of_an_unknown_repository(alice: RegistryClient, repo: str) -> None:
    response = alice.tags(repo)
    assert response.status_code == 404
    assert "NAME_UNKNOWN" in error_codes(response)


def test_tags_after_every_manifest_is_deleted(alice: RegistryClient, repo: str) -> None:
    image = alice.push_image(repo, "only")
    assert alice.delete_manifest(repo, image.digest).status_code == 202
    response = alice.tags(repo)
    # The repository may be gone (404) or list no tags.
    assert response.status_code in (200, 404)
    if response.status_code == 200:
        assert not response.json()["tags"]
    else:
        assert "NAME_UNKNOWN" in error_codes(response)


@pytest.mark.requires("strict-empty-tags")
def test_tags_after_every_manifest_is_deleted_is_an_empty_array(
    alice: RegistryClient, repo: str
) -> None:
    image = alice.push_image(repo, "only")
    assert alice.delete_manifest(repo, image.digest).status_code == 202
    response = alice.tags(repo)
    if response.status_code == 200:
        assert response.json()["tags"] == []
    else:
        assert response.status_code == 404


# --- Catalog -----------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog_repos(target: Target) -> Iterator[list[str]]:
    """REPOS pushed (in random order); the module's registry holds these and test repos."""
    alice = target.registry("alice")
    for repo in random.sample(REPOS, len(REPOS)):
        alice.push_image(repo, "v1")
    yield REPOS


def full_catalog(admin: RegistryClient) -> list[str]:
    response = admin.catalog()
    assert response.status_code == 200
    return admin.follow(response, "repositories")


def test_catalog_lists_repositories(admin: RegistryClient, catalog_repos: list[str]) -> None:
    repos = full_catalog(admin)
    assert set(catalog_repos) <= set(repos)
    assert len(repos) == len(set(repos))
    # Repositories of one depth come in lexical order.
    flat = [r for r in repos if r.count("/") == 1]
    assert lexical(flat), "\n".join(flat)


@pytest.mark.requires("strict-catalog-order")
def test_catalog_is_in_lexical_order_with_nested_repositories(
    admin: RegistryClient, catalog_repos: list[str]
) -> None:
    # "alice/cat-m-x" < "alice/cat-m/sub": a directory walk lists the child first.
    repos = full_catalog(admin)
    assert lexical(repos), "\n".join(repos)


@pytest.mark.parametrize("n", [1, 2, 5])
def test_catalog_n_and_link_pagination(
    admin: RegistryClient, catalog_repos: list[str], n: int
) -> None:
    full = full_catalog(admin)
    response = admin.catalog(n=n)
    assert response.status_code == 200
    page = response.json()["repositories"]
    assert len(page) == n or (len(page) < n and next_link(response))
    assert page == full[: len(page)]
    assert next_link(response)
    assert admin.follow(response, "repositories") == full


def test_catalog_last_is_exclusive(admin: RegistryClient, catalog_repos: list[str]) -> None:
    full = full_catalog(admin)
    for index in (0, 3, len(full) - 1):
        last = full[index]
        assert admin.catalog(last=last).json()["repositories"] == full[index + 1 :]
        limited = admin.catalog(n=2, last=last).json()["repositories"]
        assert limited == full[index + 1 : index + 3]


def test_catalog_last_need_not_be_a_repository(
    admin: RegistryClient, catalog_repos: list[str]
) -> None:
    full = full_catalog(admin)
    assert admin.catalog(last="alice/cat-b").json()["repositories"] == [
        r for r in full if r > "alice/cat-b"
    ]


def test_catalog_n_zero_is_an_empty_list(admin: RegistryClient, catalog_repos: list[str]) -> None:
    response = admin.catalog(n=0)
    assert response.status_code == 200
    assert response.json()["repositories"] == []
    assert "link" not in response.headers

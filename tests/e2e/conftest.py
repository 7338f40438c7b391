"""Peers shared by the end-to-end tests: daemons that are slow to start live per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.peers import Dockerd, GoRegistry, Postgres, Skopeo


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Dockerd]:
    with Dockerd() as engine:
        yield engine


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    with Postgres() as server:
        yield server


@pytest.fixture
def go_registry(tmp_path: Path) -> Iterator[GoRegistry]:
    """A Go registry without authentication."""
    with GoRegistry(tmp_path / "registry") as registry:
        yield registry


@pytest.fixture
def skopeo(tmp_path: Path) -> Skopeo:
    return Skopeo(tmp_path)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Everything here needs a real peer, whether or not its module says so.
    here = Path(__file__).parent
    for item in items:
        if Path(item.path).is_relative_to(here):
            item.add_marker(pytest.mark.e2e)

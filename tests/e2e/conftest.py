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

"""Fixtures of the API tests shared by several modules."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.support.fake_oidc_provider import FakeProvider
from tokenserver.config import Config

Start = Callable[[Config], AbstractContextManager[TestClient]]


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeProvider]:
    with FakeProvider(tmp_path / "fake") as provider:
        yield provider


@pytest.fixture
def fake_app(
    fake: FakeProvider, make_config: Callable[..., Config], start_client: Start
) -> Iterator[TestClient]:
    sso = {
        "issuer": fake.url,
        "client_id": "registry-auth",
        "client_secret": "fake-secret",
        "ca_file": str(fake.ca_file),
        "admin_groups": ["ops"],
    }
    with start_client(make_config({"sso": sso})) as client:
        yield client

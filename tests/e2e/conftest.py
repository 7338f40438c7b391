"""Peers shared by the end-to-end tests: daemons that are slow to start live per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from tests.support.peers import Dockerd, GoRegistry, Postgres, Skopeo, require_binary


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Dockerd]:
    with Dockerd() as engine:
        yield engine


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    with Postgres() as server:
        yield server


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = require_binary("/usr/bin/chromium")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,800",
        # The test OpenID provider's certificate is its own (the token server checks it
        # with the provider's CA file; the browser only passes through).
        "--ignore-certificate-errors",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    service = Service(executable_path=require_binary("/usr/bin/chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


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

"""Signing in through the OpenID provider in a real Chromium: npm's oidc-provider, the
token server as a process, the provider's own login form.

An admin of the provider signs in and lands on the page; a group removed at the
provider is gone from their account at their next sign-in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.oidc_provider import OIDCProvider
from tests.support.tokenserver import TokenServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[TokenServer, OIDCProvider]]:
    ts = TokenServer(tmp_path / "ts", extra={"users": {"bcrypt_cost": 4}})
    provider = OIDCProvider(
        tmp_path / "op",
        redirect_uri=f"{ts.url}/ui/login/sso/callback",
        people={"alice": ["team-a", "platform"], "bob": ["team-b"]},
    )
    sso = provider.sso_config(admin_groups=["platform"], name="Example")
    ts.config_path.write_text(ts.config_path.read_text() + f"sso: {json.dumps(sso)}\n")
    with provider, ts:
        yield ts, provider


def _at(browser: WebDriver, path: str) -> None:
    WebDriverWait(browser, 15).until(lambda b: b.current_url.split("?")[0].endswith(path))


def _through_the_provider(browser: WebDriver, base: str, login: str | None) -> None:
    """From the sign-in page, through the provider (its login form when `login` is
    given; a session of the provider signs in without one) and back."""
    browser.get(f"{base}/ui/login")
    browser.find_element(By.ID, "sign-in-sso").click()
    if login is not None:
        WebDriverWait(browser, 15).until(lambda b: b.find_elements(By.NAME, "login"))
        browser.find_element(By.NAME, "login").send_keys(login)
        browser.find_element(By.NAME, "password").send_keys("anything")
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def test_an_admin_signs_in_through_the_provider_and_groups_follow_it(
    servers: tuple[TokenServer, OIDCProvider], browser: WebDriver, tmp_path: Path
) -> None:
    ts, provider = servers
    _through_the_provider(browser, ts.url, "alice")
    _at(browser, "/ui/users")
    users = browser.find_element(By.ID, "users").text
    assert "alice" in users and "team-a" in users
    assert browser.get_cookie("ts_session") is not None
    browser.save_screenshot(str(tmp_path / "signed-in.png"))

    # team-a removed at the provider: gone here after the next sign-in (the provider's
    # own session lets alice through without its form).
    provider.set_person("alice", ["platform"])
    browser.find_element(By.ID, "sign-out").click()
    _at(browser, "/ui/login")
    _through_the_provider(browser, ts.url, None)
    _at(browser, "/ui/users")
    assert "team-a" not in browser.find_element(By.ID, "users").text
    listed = json.loads(ts.cli("user", "list", "--json"))
    (alice,) = [u for u in listed if u["name"] == "alice"]
    assert alice["groups"] == ["admin", "platform"]

    rows = ts.cli("audit", "tail", "--json", "--since", "10m")
    assert '"action": "ui.signin"' in rows and '"via": "sso"' in rows
    assert provider.client_secret not in ts.log_text()

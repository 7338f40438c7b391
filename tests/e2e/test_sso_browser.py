"""Signing in through the OpenID provider in a real Chromium: npm's oidc-provider, the
token server as a process, the provider's own login form.

An admin of the provider signs in and lands on the page; a group removed at the
provider is gone from their account at their next sign-in. A person who is no
admin lands on their own page, makes a personal token there and pushes with
it from docker to their own namespace only; an admin then sees them. Two
instances on PostgreSQL share a sign-in under way.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.test_admin_ui import _submit
from tests.support.images import write_docker_archive
from tests.support.oidc_provider import OIDCProvider
from tests.support.peers import Dockerd, Postgres
from tests.support.registry_proxy import RegistryProxy
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
    assert alice["groups"] == ["admin", "platform"] and alice["source"] == "sso"

    rows = ts.cli("audit", "tail", "--json", "--since", "10m")
    assert '"action": "ui.signin"' in rows and '"via": "sso"' in rows
    assert provider.client_secret not in ts.log_text()


def test_a_person_signs_in_makes_a_token_and_pushes_with_docker(
    servers: tuple[TokenServer, OIDCProvider],
    browser: WebDriver,
    dockerd: Dockerd,
    tmp_path: Path,
) -> None:
    ts, provider = servers
    with RegistryProxy(tmp_path / "registry", ts.registry_auth()) as registry:
        _through_the_provider(browser, ts.url, "bob")
        _at(browser, "/ui/me")
        assert browser.find_element(By.ID, "groups").text.split() == ["team-b"]
        browser.find_element(By.ID, "pat-name").send_keys("laptop")
        browser.find_element(By.ID, "pat-scopes").send_keys("repository:bob/*:pull,push")
        browser.find_element(By.ID, "pat-ttl").clear()
        browser.find_element(By.ID, "pat-ttl").send_keys("1d")
        _submit(browser, By.ID, "create-pat")
        secret = browser.find_element(By.ID, "secret").text
        assert secret.startswith("tspat_")
        browser.save_screenshot(str(tmp_path / "personal-token.png"))

        addr = registry.addr
        dockerd.docker("login", addr, "-u", "bob", "--password-stdin", input=secret)
        own = f"{addr}/bob/app:v1"
        archive = write_docker_archive(tmp_path / "bob.tar", repo_tag=own, seed="sso-bob")
        dockerd.docker("load", "-i", str(archive.path))
        dockerd.docker("push", own)
        elsewhere = f"{addr}/alice/app:v1"
        dockerd.docker("tag", own, elsewhere)
        assert dockerd.docker("push", elsewhere, check=False).returncode != 0
        dockerd.docker("logout", addr)

        # An admin of the provider signs in (the provider forgets bob first) and sees him.
        browser.find_element(By.ID, "sign-out").click()
        _at(browser, "/ui/login")
        browser.get(f"{provider.issuer}/.well-known/openid-configuration")
        browser.delete_all_cookies()
        _through_the_provider(browser, ts.url, "alice")
        _at(browser, "/ui/users")
        assert "bob" in browser.find_element(By.ID, "users").text
        rows = ts.cli("audit", "tail", "--json", "--since", "10m")
        assert '"action": "personal_token.create"' in rows and secret not in rows


def test_two_instances_on_postgresql_share_the_sign_in(postgres: Postgres, tmp_path: Path) -> None:
    """Behind a balancer: begun on one instance, the answer lands on the other; once."""
    keys = tmp_path / "keys"
    first, second = (
        TokenServer(
            tmp_path / name,
            database_url=postgres.url,
            keys_dir=keys,
            extra={"users": {"bcrypt_cost": 4}},
        )
        for name in ("a", "b")
    )
    callback = f"{first.url}/ui/login/sso/callback"  # the one public URL
    person = f"sso-{secrets.token_hex(4)}"
    provider = OIDCProvider(tmp_path / "op", redirect_uri=callback, people={person: ["ops"]})
    sso = provider.sso_config(admin_groups=["ops"], redirect_uri=callback)
    for server in (first, second):
        server.config_path.write_text(server.config_path.read_text() + f"sso: {json.dumps(sso)}\n")
    with provider, first, second, httpx.Client(timeout=30) as browser:
        began = browser.get(f"{first.url}/ui/login/sso")
        assert began.status_code == 303
        back = provider.sign_in(began.headers["location"], person)
        on_the_other = back.replace(first.url, second.url)
        done = browser.get(on_the_other)
        assert done.status_code == 200 and "ts_session" in browser.cookies, done.text[:300]
        assert browser.get(f"{second.url}/ui/users").status_code == 200
        assert browser.get(f"{first.url}/ui/users").status_code == 200  # one session for both
        # Taken: the same answer on the first instance signs no one in.
        state = dict(httpx.URL(back).params)["state"]
        again = httpx.get(back, headers={"Cookie": f"ts_sso={state}"})
        assert again.status_code == 400

"""The admin web page in a real headless Chromium, against real servers and skopeo.

A screenshot of every page lands in the test's directory (`screenshots/`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.images import write_oci_layout
from tests.support.peers import Skopeo
from tests.support.registry_proxy import RegistryProxy
from tests.support.tokenserver import TokenServer

pytestmark = pytest.mark.e2e

ROOT_PASSWORD, ALICE_PASSWORD = "root-pw-1", "alice-pw-1"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[TokenServer, RegistryProxy]]:
    ts = TokenServer(tmp_path / "ts", extra={"users": {"bcrypt_cost": 4}})
    ts.add_user("root", ROOT_PASSWORD, "admin")
    ts.add_user("alice", ALICE_PASSWORD, "dev")
    registry = RegistryProxy(tmp_path / "registry", ts.registry_auth())
    # The page reads the registry through its API: tell the token server where it is.
    config = ts.config_path.read_text() + f"ui:\n  registry_url: {registry.url}\n"
    ts.config_path.write_text(config)
    with ts, registry:
        yield ts, registry


class Shots:
    def __init__(self, browser: WebDriver, directory: Path) -> None:
        self.browser = browser
        self.directory = directory
        directory.mkdir()

    def take(self, name: str) -> None:
        path = self.directory / f"{name}.png"
        assert self.browser.save_screenshot(str(path))
        assert path.stat().st_size > 1000


_PAGE = "return [performance.timeOrigin, document.readyState]"


def _submit(browser: WebDriver, by: str, what: str) -> None:
    """Click a form's button and wait until the page that answers it has loaded."""
    before = browser.execute_script(_PAGE)[0]
    browser.find_element(by, what).click()

    def loaded(driver: WebDriver) -> bool:
        try:
            origin, state = driver.execute_script(_PAGE)
        except WebDriverException:
            return False  # between two documents
        return bool(origin != before and state == "complete")

    WebDriverWait(browser, 15).until(loaded)


def _sign_in(browser: WebDriver, base: str, user: str, password: str) -> None:
    browser.get(f"{base}/ui/login")
    browser.find_element(By.ID, "username").send_keys(user)
    browser.find_element(By.ID, "password").send_keys(password)
    _submit(browser, By.ID, "sign-in")


def _text(browser: WebDriver, element_id: str) -> str:
    return browser.find_element(By.ID, element_id).text


def test_the_admin_page_end_to_end(
    servers: tuple[TokenServer, RegistryProxy], browser: WebDriver, tmp_path: Path
) -> None:
    ts, registry = servers
    base = ts.url
    shots = Shots(browser, tmp_path / "screenshots")

    # A non-admin signs in to their own page, and is sent back to it from an admin page.
    _sign_in(browser, base, "alice", ALICE_PASSWORD)
    assert browser.current_url.endswith("/ui/me")
    assert "dev" in _text(browser, "groups")
    shots.take("non-admin-own-page")
    browser.get(f"{base}/ui/users")
    assert browser.current_url.endswith("/ui/me")
    assert not browser.find_elements(By.CSS_SELECTOR, 'a[href="/ui/users"]')
    _submit(browser, By.ID, "sign-out")
    assert browser.current_url.endswith("/ui/login")

    _sign_in(browser, base, "root", ROOT_PASSWORD)
    assert browser.current_url.endswith("/ui/users")
    cookie = browser.get_cookie("ts_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # A user.
    browser.find_element(By.ID, "new-name").send_keys("dana")
    browser.find_element(By.ID, "new-password").send_keys("dana-pw-1")
    browser.find_element(By.ID, "new-groups").send_keys("dev qa")
    _submit(browser, By.ID, "create")
    assert _text(browser, "message") == "User dana created."
    assert "dana" in _text(browser, "users") and "dev, qa" in _text(browser, "users")
    shots.take("users")

    # A CI token: its secret once, and a docker login line.
    browser.get(f"{base}/ui/ci-tokens")
    browser.find_element(By.ID, "ci-name").send_keys("ci-push")
    browser.find_element(By.ID, "ci-scopes").send_keys("repository:dana/*:pull,push")
    browser.find_element(By.ID, "ci-ttl").clear()
    browser.find_element(By.ID, "ci-ttl").send_keys("1h")
    _submit(browser, By.ID, "create-ci")
    secret = _text(browser, "secret")
    assert re.fullmatch(r"tsci_[A-Za-z0-9_-]{43}", secret)
    assert "-u ci-push --password-stdin" in _text(browser, "login-line")
    shots.take("ci-token-created")
    browser.get(f"{base}/ui/ci-tokens")
    assert secret not in browser.page_source

    # The secret pushes with skopeo.
    skopeo = Skopeo(tmp_path)
    image = tmp_path / "image"
    write_oci_layout(image, tag="v1", layers=1, seed="ui")
    dest = f"docker://{registry.addr}/dana/app:v1"
    skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", f"ci-push:{secret}",
        f"oci:{image}:v1", dest,
    )  # fmt: skip

    # The push's token request is on the audit page.
    browser.get(f"{base}/ui/audit?subject=ci-push&action=token")
    audit = _text(browser, "audit")
    assert "repository:dana/app:pull,push" in audit and "granted" in audit
    shots.take("audit")

    browser.get(f"{base}/ui/repositories")
    assert "dana/app" in browser.page_source and "v1" in browser.page_source
    shots.take("repositories")
    browser.get(f"{base}/ui/keys")
    assert "ES256" in _text(browser, "keys") and "signs" in _text(browser, "keys")
    shots.take("keys")

    # Revoked: the secret pushes no more.
    browser.get(f"{base}/ui/ci-tokens")
    _submit(browser, By.CSS_SELECTOR, "#ci-tokens button.danger")
    assert _text(browser, "message") == "CI token ci-push revoked."
    assert "revoked" in _text(browser, "ci-tokens")
    again = skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", f"ci-push:{secret}",
        f"oci:{image}:v1", f"docker://{registry.addr}/dana/app:v2", check=False,
    )  # fmt: skip
    assert again.returncode != 0

    _submit(browser, By.ID, "sign-out")
    assert browser.current_url.endswith("/ui/login")
    browser.get(f"{base}/ui/users")
    assert browser.current_url.endswith("/ui/login")

    rows = ts.cli("audit", "tail", "--json", "--since", "10m")
    assert '"action": "ui.signin"' in rows and '"action": "ci_token.create"' in rows
    assert '"via": "ui"' in rows and secret not in rows and "dana-pw-1" not in rows


def test_without_a_session_or_with_a_forged_form_nothing_changes(
    servers: tuple[TokenServer, RegistryProxy],
) -> None:
    ts, _registry = servers
    with httpx.Client(base_url=ts.url, follow_redirects=True) as client:
        anonymous = client.post(
            "/ui/users", data={"name": "eve", "password": "pw-eve-1", "csrf": "x"}
        )
        assert anonymous.status_code == 401
        login = client.get("/ui/login")
        token = re.search(r'name="csrf" value="([^"]+)"', login.text)
        assert token is not None
        # A sign-in without the login cookie's twin is refused too.
        forged_login = httpx.post(
            f"{ts.url}/ui/login",
            data={"username": "root", "password": ROOT_PASSWORD, "csrf": token.group(1)},
        )
        assert forged_login.status_code == 403
        signed = client.post(
            "/ui/login",
            data={"username": "root", "password": ROOT_PASSWORD, "csrf": token.group(1)},
        )
        assert signed.status_code == 200 and "Users" in signed.text
        forged = client.post(
            "/ui/users", data={"name": "eve", "password": "pw-eve-1", "csrf": "not-the-token"}
        )
        assert forged.status_code == 403 and "CSRF" in forged.text
        assert "eve" not in client.get("/ui/users").text
    assert "eve" not in ts.cli("user", "list")


def _elsewhere(ts: TokenServer, user: str, password: str) -> httpx.Client:
    """The same admin signed in from another browser (a client with its own cookie jar)."""
    client = httpx.Client(base_url=ts.url)
    login = client.get("/ui/login")
    token = re.search(r'name="csrf" value="([^"]+)"', login.text)
    assert token is not None
    signed = client.post(
        "/ui/login", data={"username": user, "password": password, "csrf": token.group(1)}
    )
    assert signed.status_code == 303 and client.get("/ui/users").status_code == 200
    return client


def _signed_in(client: httpx.Client) -> bool:
    return client.get("/ui/users").status_code == 200


def _session_ids(ts: TokenServer, user: str) -> list[int]:
    return [s["id"] for s in json.loads(ts.cli("ui-session", "list", "--json", "--user", user))]


def test_web_sessions_on_the_page_end_and_stay_ended(
    servers: tuple[TokenServer, RegistryProxy], browser: WebDriver, tmp_path: Path
) -> None:
    ts, _registry = servers
    base = ts.url
    shots = Shots(browser, tmp_path / "screenshots")
    ts.add_user("dana", "dana-pw-1", "admin")
    dana = _elsewhere(ts, "dana", "dana-pw-1")
    _sign_in(browser, base, "root", ROOT_PASSWORD)

    # The list, and the end button of dana's row.
    browser.get(f"{base}/ui/sessions")
    listed = _text(browser, "sessions")
    assert "dana" in listed and "root (this one)" in listed
    shots.take("sessions")
    (dana_id,) = _session_ids(ts, "dana")
    _submit(browser, By.ID, f"end-{dana_id}")
    assert _text(browser, "message") == "Web session ended."
    assert not _signed_in(dana)

    # A password set on the page ends every session of the user.
    dana = _elsewhere(ts, "dana", "dana-pw-1")
    browser.get(f"{base}/ui/users/dana")
    browser.find_element(By.ID, "password").send_keys("dana-pw-2")
    _submit(browser, By.CSS_SELECTOR, "form[action$='/password'] button")
    assert "web sessions are ended" in _text(browser, "message")
    assert not _signed_in(dana) and _session_ids(ts, "dana") == []

    # Disabled and enabled again on the page: the old session does not come back.
    dana = _elsewhere(ts, "dana", "dana-pw-2")
    browser.get(f"{base}/ui/users/dana")
    _submit(browser, By.ID, "toggle")
    assert _session_ids(ts, "dana") == []
    _submit(browser, By.ID, "toggle")
    assert "(enabled)" in browser.page_source
    assert not _signed_in(dana)

    # Ending one's own session signs out.
    browser.get(f"{base}/ui/sessions")
    (root_id,) = _session_ids(ts, "root")
    _submit(browser, By.ID, f"end-{root_id}")
    assert browser.current_url.endswith("/ui/login")
    browser.get(f"{base}/ui/sessions")
    assert browser.current_url.endswith("/ui/login")

    trail = ts.cli("audit", "tail", "--json", "--since", "10m", "--action", "ui_session.end")
    assert trail.count('"via": "ui"') == 2 and trail.count('"outcome": "ok"') == 2


def test_a_person_makes_a_token_on_their_page_and_pushes_with_it(
    servers: tuple[TokenServer, RegistryProxy], browser: WebDriver, tmp_path: Path
) -> None:
    ts, registry = servers
    base = ts.url
    shots = Shots(browser, tmp_path / "screenshots")
    _sign_in(browser, base, "alice", ALICE_PASSWORD)
    assert browser.current_url.endswith("/ui/me")
    assert "repository:alice/app" in _text(browser, "grants")
    browser.find_element(By.ID, "pat-name").send_keys("laptop")
    browser.find_element(By.ID, "pat-scopes").send_keys("repository:alice/*:pull,push")
    browser.find_element(By.ID, "pat-ttl").clear()
    browser.find_element(By.ID, "pat-ttl").send_keys("1d")
    _submit(browser, By.ID, "create-pat")
    secret = _text(browser, "secret")
    assert re.fullmatch(r"tspat_[A-Za-z0-9_-]{43}", secret)
    assert "-u alice --password-stdin" in _text(browser, "login-line")
    shots.take("personal-token-created")
    browser.get(f"{base}/ui/me")
    assert secret not in browser.page_source and "laptop" in _text(browser, "personal-tokens")

    skopeo = Skopeo(tmp_path)
    image = tmp_path / "image"
    write_oci_layout(image, tag="v1", layers=1, seed="alice-page")
    skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", f"alice:{secret}",
        f"oci:{image}:v1", f"docker://{registry.addr}/alice/app:v1",
    )  # fmt: skip
    elsewhere = skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", f"alice:{secret}",
        f"oci:{image}:v1", f"docker://{registry.addr}/root/app:v1", check=False,
    )  # fmt: skip
    assert elsewhere.returncode != 0

    # Revoked on the page: the secret pushes no more.
    _submit(browser, By.CSS_SELECTOR, "#personal-tokens button.danger")
    assert _text(browser, "message") == "Personal token laptop revoked."
    again = skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", f"alice:{secret}",
        f"oci:{image}:v1", f"docker://{registry.addr}/alice/app:v2", check=False,
    )  # fmt: skip
    assert again.returncode != 0
    rows = ts.cli("audit", "tail", "--json", "--since", "10m")
    assert '"action": "personal_token.create"' in rows and secret not in rows

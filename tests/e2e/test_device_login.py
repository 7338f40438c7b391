"""docker login through the browser, end to end: real token servers and a registry, a
device's HTTP calls, and its person approving in a real headless Chromium.

The device asks for codes, its person follows the link, signs in, is brought
back to the code, sees the request and approves it; the device's next poll
gets a refresh token, which the refresh grant (as docker uses it) turns into
a registry token the registry accepts. A screenshot of each page lands in the
test's directory. Two instances on one PostgreSQL database: a code outlives a
SIGKILL of the instance that issued it, is approved on the other, and racing
polls on both get one refresh token.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.e2e.test_admin_ui import Shots, _submit
from tests.e2e.test_shared_postgres import pair
from tests.support.registry_proxy import RegistryProxy
from tests.support.tokenserver import TokenServer

pytestmark = pytest.mark.e2e

__all__ = ["pair"]  # a fixture, shared with PostgreSQL's tests

ROOT_PASSWORD = "root-pw-1"
CLIENT = "docker-credential-tokenserver"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# A one-second interval keeps the tests short; the protocol is the same.
FAST_POLLS = {"device": {"interval": 1}}


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[TokenServer, RegistryProxy]]:
    ts = TokenServer(tmp_path / "ts", extra={"users": {"bcrypt_cost": 4}, **FAST_POLLS})
    ts.add_user("root", ROOT_PASSWORD, "admin")
    registry = RegistryProxy(tmp_path / "registry", ts.registry_auth())
    with ts, registry:
        yield ts, registry


def _poll(ts: TokenServer, device_code: str) -> httpx.Response:
    return httpx.post(
        f"{ts.url}/token",
        data={"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": CLIENT},
    )


def test_a_device_is_approved_in_the_browser_and_reaches_the_registry(
    servers: tuple[TokenServer, RegistryProxy], browser: WebDriver, tmp_path: Path
) -> None:
    ts, registry = servers
    shots = Shots(browser, tmp_path / "screenshots")
    asked = httpx.post(
        f"{ts.url}/device/code",
        data={"client_id": CLIENT, "scope": "repository:root/app:pull"},
        headers={"user-agent": "device-test/1"},
    )
    assert asked.status_code == 200, asked.text
    codes: dict[str, Any] = asked.json()
    assert codes["verification_uri"] == f"{ts.url}/device"
    pending = _poll(ts, codes["device_code"])
    assert pending.json()["error"] == "authorization_pending"

    # The person follows the link: to the sign-in, then back to the code.
    browser.get(codes["verification_uri_complete"])
    assert "/ui/login?return_to=" in browser.current_url
    shots.take("sign-in")
    browser.find_element(By.ID, "username").send_keys("root")
    browser.find_element(By.ID, "password").send_keys(ROOT_PASSWORD)
    _submit(browser, By.ID, "sign-in")
    assert browser.current_url.endswith(f"/ui/device?user_code={codes['user_code']}")
    assert browser.find_element(By.ID, "client-id").text == CLIENT
    assert browser.find_element(By.ID, "client-ip").text == "127.0.0.1"
    assert browser.find_element(By.ID, "user_code").get_attribute("value") == codes["user_code"]
    shots.take("request")
    _submit(browser, By.ID, "approve")
    assert "Approved" in browser.find_element(By.ID, "decided").text
    shots.take("approved")

    # The device's next poll (after the interval) gets its refresh token.
    time.sleep(1.1)
    granted = _poll(ts, codes["device_code"])
    assert granted.status_code == 200, granted.text
    refresh_token = granted.json()["refresh_token"]
    assert refresh_token.startswith("rt_")
    assert _poll(ts, codes["device_code"]).json()["error"] in ("invalid_grant", "slow_down")

    # docker's refresh grant, then the registry.
    refreshed = httpx.post(
        f"{ts.url}/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "service": ts.service,
            "client_id": "docker",
            "scope": "repository:root/app:pull",
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    token = refreshed.json()["access_token"]
    tags = httpx.get(
        f"{registry.url}/v2/root/app/tags/list", headers={"Authorization": f"Bearer {token}"}
    )
    # Let in, and told the repository holds nothing yet.
    assert tags.status_code == 404, tags.text
    assert tags.json()["errors"][0]["code"] == "NAME_UNKNOWN"
    refused = httpx.get(f"{registry.url}/v2/root/app/tags/list")
    assert refused.status_code == 401

    rows = ts.cli("audit", "tail", "--json", "--since", "10m")
    assert '"action": "device.approve"' in rows and f'"target": "{CLIENT}"' in rows
    assert codes["device_code"] not in rows and codes["user_code"] not in rows
    assert refresh_token not in rows
    log = ts.log_path.read_text()
    for secret in (codes["device_code"], codes["user_code"], refresh_token):
        assert secret not in log


def _sign_in(ts: TokenServer, user: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=ts.url)
    login = client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)
    assert csrf is not None
    signed = client.post(
        "/ui/login", data={"username": user, "password": password, "csrf": csrf.group(1)}
    )
    assert signed.status_code == 303, signed.text
    return client


def test_a_code_outlives_a_crash_and_racing_polls_get_one_refresh_token(
    pair: tuple[TokenServer, TokenServer],
) -> None:
    first, second = pair
    first.add_user("root", ROOT_PASSWORD, "admin")
    codes = httpx.post(f"{first.url}/device/code", data={"client_id": CLIENT}).json()
    first.kill()  # SIGKILL: the code is in the database, not in the process
    first.start()
    assert _poll(first, codes["device_code"]).json()["error"] == "authorization_pending"

    with contextlib.closing(_sign_in(second, "root", ROOT_PASSWORD)) as person:
        page = person.get("/ui/device", params={"user_code": codes["user_code"]})
        assert page.status_code == 200 and CLIENT in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        form = {"user_code": codes["user_code"], "decision": "approve", "csrf": csrf.group(1)}
        assert person.post("/ui/device", data=form).status_code == 200
        assert person.post("/ui/device", data=form).status_code == 409

    time.sleep(5.2)  # the default interval since the last poll
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: _poll(pair[i % 2], codes["device_code"]), range(8)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [400] * 7, [a.text for a in answers]
    errors = {a.json()["error"] for a in answers if a.status_code == 400}
    assert errors <= {"invalid_grant", "slow_down"}
    rows = first.cli("refresh-token", "list", "--user", "root")
    assert len(rows.splitlines()) == 1, rows

"""docker-credential-tokenserver end to end: docker pulls with nothing but a browser tab.

docker's `credHelpers` names the helper for one registry; the first pull
runs the device flow (the link and code on the terminal), the test approves
the code in a real headless Chromium as the person, and the pull goes on
with the refresh token the helper stored; the next pull asks nothing.
skopeo (containers/image) uses the same stored credential through its own
`credHelpers`. A denied code ends the pull and stores nothing.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.e2e.test_admin_ui import _submit
from tests.support.images import write_oci_layout
from tests.support.peers import Dockerd, Skopeo
from tests.support.registry_proxy import RegistryProxy
from tests.support.tokenserver import ROOT, TokenServer

pytestmark = pytest.mark.e2e

ROOT_PASSWORD = "root-pw-1"
HELPER = Path(sys.executable).parent / "docker-credential-tokenserver"
_PROMPT = re.compile(r"open (\S+)\nand approve the code ([A-Z0-9-]+) ")


@pytest.fixture(params=[600])
def stack(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[TokenServer, RegistryProxy]]:
    device = {"interval": 1, "code_ttl": request.param}
    ts = TokenServer(tmp_path / "ts", extra={"users": {"bcrypt_cost": 4}, "device": device})
    ts.add_user("root", ROOT_PASSWORD, "admin")
    registry = RegistryProxy(tmp_path / "registry", ts.registry_auth())
    with ts, registry:
        image = tmp_path / "image"
        write_oci_layout(image, tag="v1", layers=1, seed="helper")
        Skopeo(tmp_path)(
            "copy", "--dest-tls-verify=false", "--dest-creds", f"root:{ROOT_PASSWORD}",
            f"oci:{image}:v1", f"docker://{registry.addr}/root/app:v1",
        )  # fmt: skip
        yield ts, registry


class _Person:
    """Whoever sits at the terminal: their config files, and the helper's prompt as it comes."""

    def __init__(self, home: Path, registry: str) -> None:
        assert HELPER.is_file(), "the package installs docker-credential-tokenserver"
        self.xdg = home / "xdg"
        self.docker_config = home / "docker"
        self.docker_config.mkdir(parents=True)
        helpers = {"credHelpers": {registry: "tokenserver"}}
        (self.docker_config / "config.json").write_text(json.dumps(helpers))
        self.auth_file = home / "containers-auth.json"
        self.auth_file.write_text(json.dumps(helpers))
        self.env = {
            "PATH": f"{HELPER.parent}:/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),  # the helper's code is this checkout's
            "XDG_CONFIG_HOME": str(self.xdg),
            "DOCKER_CONFIG": str(self.docker_config),
        }

    def credentials(self) -> dict[str, dict[str, str]]:
        path = self.xdg / "tokenserver" / "credentials.json"
        auths: dict[str, dict[str, str]] = json.loads(path.read_text())["auths"]
        return auths


class _Run:
    """docker, run as the person runs it; its standard error read as it comes, the prompt
    among it (the pull waits for the approval meanwhile)."""

    def __init__(self, dockerd: Dockerd, person: _Person, *args: str) -> None:
        self.process = subprocess.Popen(
            [dockerd.cli, "-H", dockerd.host, *args],
            env=dockerd.client_env(person.env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        stderr = self.process.stderr
        assert stderr is not None
        self._reader = threading.Thread(target=lambda: [self.lines.put(x) for x in stderr])
        self._reader.start()

    def _read(self, timeout: float) -> None:
        with contextlib.suppress(queue.Empty):
            self.seen.append(self.lines.get(timeout=timeout))

    def prompt(self) -> tuple[str, str]:
        """The link and the code the helper printed."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self._read(1)
            found = _PROMPT.search("".join(self.seen))
            if found:
                return found.group(1), found.group(2)
        raise AssertionError(f"no prompt from the helper: {self.seen}")

    def finish(self) -> tuple[int, str]:
        """The exit status, and all it wrote on both outputs."""
        assert self.process.stdout is not None
        out = self.process.stdout.read()
        code = self.process.wait(timeout=120)
        self._reader.join(10)
        while not self.lines.empty():
            self._read(0)
        return code, out + "".join(self.seen)


def _decide(browser: WebDriver, url: str, code: str, decision: str) -> None:
    browser.get(url)
    if "/ui/login" in browser.current_url:
        browser.find_element(By.ID, "username").send_keys("root")
        browser.find_element(By.ID, "password").send_keys(ROOT_PASSWORD)
        _submit(browser, By.ID, "sign-in")
    assert browser.find_element(By.ID, "user_code").get_attribute("value") == code
    _submit(browser, By.ID, decision)


def test_docker_pulls_after_one_approval_in_the_browser(
    stack: tuple[TokenServer, RegistryProxy],
    dockerd: Dockerd,
    browser: WebDriver,
    tmp_path: Path,
) -> None:
    ts, registry = stack
    person = _Person(tmp_path / "person", registry.addr)
    image = f"{registry.addr}/root/app:v1"

    pull = _Run(dockerd, person, "pull", image)
    url, code = pull.prompt()
    assert url.startswith(f"{ts.url}/device?user_code=")
    _decide(browser, url, code, "approve")
    status, said = pull.finish()
    assert status == 0, said
    stored = person.credentials()[registry.addr]
    assert stored["Username"] == "<token>" and stored["Secret"].startswith("rt_")

    # The next pull asks nothing: the stored refresh token does.
    dockerd.docker("rmi", image)
    status, said = _Run(dockerd, person, "pull", image).finish()
    assert status == 0, said
    assert "approve the code" not in said

    # skopeo reads the same helper through containers/image's credHelpers.
    skopeo = Skopeo(tmp_path)
    inspected = skopeo(
        "inspect", "--tls-verify=false", f"docker://{image}",
        env={**person.env, "REGISTRY_AUTH_FILE": str(person.auth_file)},
    )  # fmt: skip
    assert json.loads(inspected.stdout)["Name"] == f"{registry.addr}/root/app"

    rows = ts.cli("audit", "tail", "--json", "--since", "10m")
    assert '"action": "device.approve"' in rows
    assert stored["Secret"] not in rows and stored["Secret"] not in ts.log_path.read_text()


def test_a_denied_code_ends_the_pull_and_stores_nothing(
    stack: tuple[TokenServer, RegistryProxy],
    dockerd: Dockerd,
    browser: WebDriver,
    tmp_path: Path,
) -> None:
    _ts, registry = stack
    person = _Person(tmp_path / "person", registry.addr)
    pull = _Run(dockerd, person, "pull", f"{registry.addr}/root/app:v1")
    url, code = pull.prompt()
    _decide(browser, url, code, "deny")
    status, said = pull.finish()
    assert status != 0, said
    assert f"No sign-in for {registry.addr}: the sign-in was denied." in said
    assert "pull access denied" in said  # docker went on without credentials
    assert not (person.xdg / "tokenserver" / "credentials.json").exists()


@pytest.mark.parametrize("stack", [60], indirect=True)  # the shortest code lifetime
def test_a_wrong_code_finds_nothing_and_an_unapproved_one_expires(
    stack: tuple[TokenServer, RegistryProxy], browser: WebDriver, tmp_path: Path
) -> None:
    ts, registry = stack
    person = _Person(tmp_path / "person", registry.addr)
    helper = subprocess.Popen(
        [str(HELPER), "get"],
        env=person.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert helper.stdin is not None and helper.stderr is not None
    helper.stdin.write(registry.addr)
    helper.stdin.close()
    prompt = ""
    while "approve the code" not in prompt:
        line = helper.stderr.readline()
        assert line, "the helper ended without a prompt"
        prompt += line
    found = _PROMPT.search(prompt)
    assert found is not None
    code = found.group(2)

    # A code typed wrong finds nothing and decides nothing.
    wrong = "BBBB-BBBB" if code != "BBBB-BBBB" else "CCCC-CCCC"
    _decide_typed(browser, ts.url, wrong)
    assert "no request has this code" in browser.find_element(By.ID, "error").text
    # Nobody approves the right one: the helper gives up when it expires.
    assert helper.wait(timeout=120) == 1
    out = helper.stdout.read() if helper.stdout is not None else ""
    err = prompt + helper.stderr.read()
    assert out.strip() == "credentials not found in native keychain"
    assert "the code expired before it was approved" in err
    assert not (person.xdg / "tokenserver" / "credentials.json").exists()


def _decide_typed(browser: WebDriver, base: str, typed: str) -> None:
    browser.get(f"{base}/device")
    if "/ui/login" in browser.current_url:
        browser.find_element(By.ID, "username").send_keys("root")
        browser.find_element(By.ID, "password").send_keys(ROOT_PASSWORD)
        _submit(browser, By.ID, "sign-in")
    browser.find_element(By.ID, "user_code").send_keys(typed)
    _submit(browser, By.ID, "continue")

"""docker-credential-tokenserver's protocol and its file, run as docker runs it: a process per verb.

`get` of a registry that has nothing stored starts a device login; those
tests are in tests/unit/test_device_login.py (a hostile token server) and
tests/e2e (ours, approved in Chromium).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.peers import free_port

HELPER = [sys.executable, "-m", "tokenserver.credential_helper"]


def _run(home: Path, verb: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["XDG_CONFIG_HOME"] = str(home)
    return subprocess.run(
        [*HELPER, verb], input=stdin, env=env, capture_output=True, text=True, timeout=60
    )


def _store(home: Path, server: str, username: str, secret: str) -> None:
    request = json.dumps({"ServerURL": server, "Username": username, "Secret": secret})
    done = _run(home, "store", request)
    assert done.returncode == 0, done.stdout + done.stderr


def test_store_get_list_erase(tmp_path: Path) -> None:
    _store(tmp_path, "https://Registry.Example:5000/v2/", "<token>", "refresh-1")
    got = _run(tmp_path, "get", "registry.example:5000\n")
    assert got.returncode == 0, got.stdout
    assert json.loads(got.stdout) == {
        "ServerURL": "registry.example:5000",
        "Username": "<token>",
        "Secret": "refresh-1",
    }
    _store(tmp_path, "registry.example:5000", "<token>", "refresh-2")  # replaces, not adds
    assert json.loads(_run(tmp_path, "list").stdout) == {"registry.example:5000": "<token>"}
    assert json.loads(_run(tmp_path, "get", "registry.example:5000").stdout)["Secret"] == (
        "refresh-2"
    )
    assert _run(tmp_path, "erase", "registry.example:5000").returncode == 0
    assert json.loads(_run(tmp_path, "list").stdout) == {}
    again = _run(tmp_path, "erase", "registry.example:5000")
    assert again.returncode == 1 and "credentials not found" in again.stdout


def test_the_file_is_its_owners_alone(tmp_path: Path) -> None:
    _store(tmp_path, "127.0.0.1:5000", "<token>", "s3cret-refresh")
    path = tmp_path / "tokenserver" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".credentials-")]


def test_version_and_unknown_verbs(tmp_path: Path) -> None:
    version = _run(tmp_path, "version")
    assert version.returncode == 0 and version.stdout.startswith("docker-credential-tokenserver ")
    unknown = _run(tmp_path, "steal")
    assert unknown.returncode == 1 and "unknown verb" in unknown.stdout


@pytest.mark.parametrize(
    "request_text",
    [
        "not json",
        "[]",
        '{"ServerURL": "a"}',
        '{"ServerURL": "", "Username": "u", "Secret": "s"}',
        '{"ServerURL": "h\\u00e9st", "Username": "u", "Secret": "s"}',
        '{"ServerURL": "a b", "Username": "u", "Secret": "s"}',
        '{"ServerURL": "a\\u0000b", "Username": "u", "Secret": "s"}',
        json.dumps({"ServerURL": "x" * 300, "Username": "u", "Secret": "s"}),
        json.dumps({"ServerURL": "r", "Username": "u", "Secret": "s" * 70_000}),
    ],
)
def test_a_bad_store_is_refused_and_changes_nothing(tmp_path: Path, request_text: str) -> None:
    _store(tmp_path, "kept.example", "<token>", "kept")
    path = tmp_path / "tokenserver" / "credentials.json"
    before = path.read_bytes()
    done = _run(tmp_path, "store", request_text)
    assert done.returncode == 1 and done.stdout.strip()
    assert "kept" not in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert path.read_bytes() == before


def test_a_huge_request_is_refused_unread(tmp_path: Path) -> None:
    started = time.monotonic()
    done = _run(tmp_path, "get", "r" * (8 * 1024 * 1024))
    assert done.returncode == 1 and "larger than" in done.stdout
    assert time.monotonic() - started < 30


def test_a_file_it_did_not_write_is_refused_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "tokenserver" / "credentials.json"
    path.parent.mkdir(parents=True)
    for content in (b"{not json", b'{"auths": []}', b'{"auths": {"r": {"Username": 1}}}'):
        path.write_bytes(content)
        listed = _run(tmp_path, "list")
        assert listed.returncode == 1 and "not a credentials file" in listed.stdout
        stored = _run(tmp_path, "store", '{"ServerURL":"r","Username":"u","Secret":"s"}')
        assert stored.returncode == 1 and path.read_bytes() == content
    path.write_bytes(b" " * (2 * 1024 * 1024))
    assert "larger than" in _run(tmp_path, "list").stdout


def test_helpers_run_at_once_lose_nothing(tmp_path: Path) -> None:
    servers = [f"registry-{n}.example" for n in range(16)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda s: _store(tmp_path, s, "<token>", f"secret-{s}"), servers))
    assert json.loads(_run(tmp_path, "list").stdout) == dict.fromkeys(servers, "<token>")


def test_get_of_an_unreachable_registry_fails_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    done = _run(tmp_path, "get", f"127.0.0.1:{free_port()}")
    assert done.returncode == 1
    assert done.stdout.strip() == "credentials not found in native keychain"
    assert "cannot be reached" in done.stderr
    assert time.monotonic() - started < 30
    assert not (tmp_path / "tokenserver" / "credentials.json").exists()

"""The composition root: one `Services` per app, reached one way; the CLI opens the same wiring."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tokenserver import cli
from tokenserver.config import Config
from tokenserver.services import Services

ROOT = Path(__file__).resolve().parents[2]


def test_the_app_state_holds_the_services_alone(client: Any) -> None:
    state = vars(client.app.state)["_state"]
    assert list(state) == ["services"]
    services = state["services"]
    assert isinstance(services, Services)
    # One clock for every part: what a test moves, the grants and the accounts see.
    assert services.grants.clock is services.clock


def test_routes_reach_the_app_state_through_the_one_accessor() -> None:
    routes = ROOT / "tokenserver" / "routes"
    readers = sorted(
        path.relative_to(routes).as_posix()
        for path in routes.rglob("*.py")
        if "app.state" in path.read_text()
    )
    assert readers == ["common.py"]


def test_the_cli_needs_no_signing_key_before_the_first(
    make_config: Callable[..., Config],
    config_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The CLI opens the administration only: a fresh install adds users and
    # makes its first key in either order, and neither starts the audit writer.
    make_config({"token": {"keys_dir": "no-keys-yet"}})

    def run(*argv: str, stdin: str = "") -> int:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        return cli.main([*argv, "--config", str(config_path)])

    assert run("user", "add", "alice", "--password-stdin", stdin="pw-first-user\n") == 0
    assert run("keys", "generate") == 0
    assert run("audit", "tail", "--action", "keys.generate") == 0
    assert "keys.generate" in capsys.readouterr().out

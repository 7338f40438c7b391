"""A test that starts a peer without the `peers` mark fails, so `make check` stays fast."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.peers import Peer, UnmarkedPeerError, forbid_peers


class Never(Peer):
    name = "never"

    def argv(self) -> list[str]:
        raise AssertionError("the ban must stop the start before any process")


def test_this_unmarked_test_may_not_start_a_peer(tmp_path: Path) -> None:
    with pytest.raises(UnmarkedPeerError, match=r"test_peer_marks\.py.*is not marked `peers`"):
        Never(tmp_path).spawn()


def test_the_ban_is_lifted_for_marked_tests(tmp_path: Path) -> None:
    forbid_peers(None)  # as for a test marked `peers` or `e2e` (the conftest resets it after)
    with pytest.raises(AssertionError, match="before any process"):
        Never(tmp_path).spawn()


@pytest.fixture
def pretend_peer(real_peer: None) -> None:
    """Stands for a fixture that starts a peer (this one starts none)."""


def test_a_test_using_a_peer_fixture_is_marked(
    pretend_peer: None, request: pytest.FixtureRequest
) -> None:
    assert request.node.get_closest_marker("peers") is not None


def test_a_test_using_none_is_not(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("peers") is None

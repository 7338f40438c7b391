"""The one manifest decoder: nesting is bounded before anything parses or walks it."""

from __future__ import annotations

import json

import pytest

from registry_proxy.storage.errors import ManifestInvalid
from registry_proxy.storage.schema import MAX_DEPTH, decode, nesting_depth


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b"{}", 1),
        (b'{"a":[1,{"b":2}]}', 3),
        (b'{"a":"[[[[{{{{","b":"\\"[["}', 1),
        (b'"just a string [["', 0),
        (b"2", 0),
        (b'{"x":[[],[[]]]}', 4),
    ],
)
def test_nesting_depth_ignores_brackets_in_strings(body: bytes, depth: int) -> None:
    assert nesting_depth(body) == depth


def test_decode_accepts_up_to_the_limit_and_refuses_beyond() -> None:
    inner: object = "leaf"
    for _ in range(MAX_DEPTH - 1):
        inner = [inner]
    deepest_allowed = json.dumps({"nested": inner}).encode()
    assert nesting_depth(deepest_allowed) == MAX_DEPTH
    assert decode(deepest_allowed)["nested"]
    too_deep = json.dumps({"nested": [inner]}).encode()
    with pytest.raises(ManifestInvalid, match="deeper"):
        decode(too_deep)


def test_a_very_deep_document_is_refused_without_recursion() -> None:
    with pytest.raises(ManifestInvalid):
        decode(b"[" * 1_000_000 + b"]" * 1_000_000)
    with pytest.raises(ManifestInvalid):
        decode(b'{"a":' * 200_000 + b"1" + b"}" * 200_000)

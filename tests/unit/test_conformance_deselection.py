"""The conformance suite says why it deselects what it does, and hides no other deselection.

`make test` ends with "N deselected": the suite's own (tests of what a
target lacks, see tests/conformance/conftest.py) must be named as such, while
anything deselected otherwise (-k, -m) still counts in pytest's own tally.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(
    r"^conformance: (\d+) deselected on purpose, tests of optional API parts or spec points "
    r"their target lacks \((.+); FEATURES in tests/conformance/conftest\.py\)$",
    re.MULTILINE,
)


def _collect(*runs: tuple[str, ...]) -> list[tuple[int, dict[str, int], int]]:
    """Per run: the suite's count, its count per target, pytest's whole "deselected" count."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only"]
    started = [
        subprocess.Popen(
            [*command, "tests/conformance", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for args in runs  # at once: each is seconds of imports
    ]
    found = []
    for proc in started:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out[-2000:]
        line = LINE.search(out)
        assert line is not None, out[-2000:]
        per_target = {
            name: int(count)
            for name, count in (part.rsplit(" ", 1) for part in line.group(2).split(", "))
        }
        tally = re.search(r"\((\d+) deselected\)", out)
        assert tally is not None, out[-2000:]
        found.append((int(line.group(1)), per_target, int(tally.group(1))))
    return found


@pytest.mark.slow  # three pytest collections of the conformance suite in subprocesses
def test_the_suites_deselections_are_named_and_others_still_count() -> None:
    (ours, per_target, total), (ours_k, _, total_k) = _collect((), ("-k", "not test_blobs"))
    assert ours == total == sum(per_target.values()) > 0
    assert per_target["go-registry"] > 0  # the strict points the Go registry misses
    assert ours_k <= ours
    assert total_k > ours_k  # what -k deselected is not passed off as the suite's

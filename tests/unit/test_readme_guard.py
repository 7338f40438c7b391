"""Every command the README shows is run by a test: here, in make check, at once.

tests/e2e/test_readme_commands.py runs them (it needs docker, podman and
skopeo); this only checks that none is new to it.
"""

from __future__ import annotations

from tests.e2e.test_readme_commands import ELSEWHERE, INLINE, README, ROOT, readme_commands


def test_no_readme_command_goes_unrun() -> None:
    commands = readme_commands(README.read_text())
    unrun = [
        c
        for c in commands.other
        if c not in INLINE
        and c not in ELSEWHERE
        and not any(line.startswith(c) for line in commands.shell)
    ]
    assert not unrun, "README commands no test runs (add them to INLINE or ELSEWHERE)"
    known = set(commands.other) | set(commands.shell)
    stale = [c for c in [*INLINE, *ELSEWHERE] if c not in known]
    assert not stale, "commands the README no longer has"
    for where in ELSEWHERE.values():
        if where.startswith("tests/"):
            assert (ROOT / where.split("::")[0]).is_file(), where

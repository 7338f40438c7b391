"""Ctrl-C for a script of `make` and what it started, not for the `make` above them.

A terminal sends Ctrl-C's SIGINT to its whole foreground process group.
Under `make TARGET` that group has make in it, and make, once its recipe has
ended, kills itself with that SIGINT: status 130 and "make: *** ...", however
cleanly the recipe stopped. So a script started in a foreground group that
someone else leads takes a process group of its own (what it starts after
joins it), makes it the terminal's foreground, and gives the terminal back
when it exits.

Ctrl-Z then reaches only that group too: its processes stop, and the script
stops make as well so that the shell sees the job stop and takes the
terminal back. Once make runs again (`fg` or `bg`) the group is continued,
and after `fg` the terminal is taken again. The script calls `follow()`
every fraction of a second to notice.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

__all__ = ["Terminal"]

# Seconds make has to stop after Ctrl-Z is passed on to it.
SUSPEND_TIMEOUT = 2


class Terminal:
    """The terminal's foreground taken from make, while this script runs (see the module)."""

    def __init__(self, fd: int, parent_group: int) -> None:
        self.fd = fd
        self.parent_group = parent_group
        self.suspended = False

    @classmethod
    def claim(cls) -> Terminal | None:
        """Take the terminal when make (or anyone but us) leads its foreground group; else None."""
        try:
            fd = sys.stdin.fileno()
            in_front = os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp()
        except (OSError, ValueError):
            return None
        if not in_front or os.getpgrp() == os.getpid():  # no terminal, or the group is ours
            return None
        terminal = cls(fd, os.getpgrp())
        os.setpgid(0, 0)
        terminal._foreground(os.getpgrp())
        signal.signal(signal.SIGTSTP, terminal._suspend)
        return terminal

    def _foreground(self, group: int) -> None:
        # tcsetpgrp from a background group would stop the caller with SIGTTOU.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU})
        try:
            os.tcsetpgrp(self.fd, group)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def _suspend(self, _signum: int, _frame: FrameType | None) -> None:
        self.release()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.parent_group, signal.SIGTSTP)
            # Seen stopped before anything watches for it to run again.
            deadline = time.monotonic() + SUSPEND_TIMEOUT
            while time.monotonic() < deadline:
                if _state(self.parent_group) == "T":
                    self.suspended = True
                    return
                time.sleep(0.01)
        # Nobody took the job (a group the kernel keeps from stopping): carry on.
        self._resume()

    def _resume(self) -> None:
        self.suspended = False
        os.killpg(os.getpgrp(), signal.SIGCONT)

    def follow(self) -> None:
        """After Ctrl-Z, continue the group once make runs again; after `fg`, retake the terminal."""
        if self.suspended:
            if _state(self.parent_group) == "T":
                return
            self._resume()
        with contextlib.suppress(OSError):
            if os.tcgetpgrp(self.fd) == self.parent_group:
                self._foreground(os.getpgrp())

    def release(self) -> None:
        with contextlib.suppress(OSError):
            if os.tcgetpgrp(self.fd) == os.getpgrp():
                self._foreground(self.parent_group)


def _state(pid: int) -> str:
    """A process's state letter (T: stopped), or "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""

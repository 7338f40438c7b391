"""Rules kept in their own file, picked up again whenever the file changes.

The file holds the list of rules, either at the top level or under an `acl`
key (so a docker_auth `acl` section can be pasted as it is). A file that
cannot be read or does not validate at start-up stops the server; later, it
is refused with an error in the log and the rules already loaded stay.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from authcore.scope import Access
from authcore.settings import ConfigError
from tokenserver.authz.acl import ACLEntry, ACLPolicy
from tokenserver.authz.policy import Decision, Requester

__all__ = ["ACLFile", "read_acl_file"]

log = logging.getLogger(__name__)

_ENTRIES = TypeAdapter(list[ACLEntry])


def read_acl_file(path: Path) -> list[ACLEntry]:
    """Parse and validate; ConfigError names the file and the bad entry."""
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"acl_file {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, yaml.YAMLError):
        raise ConfigError(f"acl_file {path}: not valid YAML") from None
    except RecursionError:  # PyYAML builds nested lists by recursion
        raise ConfigError(f"acl_file {path}: nested too deeply") from None
    if isinstance(data, dict) and set(data) == {"acl"}:
        data = data["acl"]
    if not isinstance(data, list):
        raise ConfigError(f"acl_file {path}: must be a list of rules (or `acl:` and a list)")
    try:
        return _ENTRIES.validate_python(data)
    except ValidationError as exc:
        raise ConfigError(f"acl_file {path}: {describe_errors(exc)}") from None


def describe_errors(exc: ValidationError) -> str:
    """`rule 3 match.ip: ...`, counting rules from 1 as an operator does."""
    problems = []
    for err in exc.errors():
        index, *rest = err["loc"]
        where = f"rule {int(index) + 1}" + (" " + ".".join(map(str, rest)) if rest else "")
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        problems.append(f"{where}: {msg}")
    return "; ".join(problems)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class ACLFile:
    """An `ACLPolicy` that follows its file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp = _stamp(path)
        self._policy = ACLPolicy(read_acl_file(path))
        log.info("acl loaded", extra={"path": str(path), "rules": len(self._policy)})

    def current(self) -> ACLPolicy:
        stamp = _stamp(self.path)
        if stamp is None or stamp == self._stamp:
            # A file briefly missing (an editor replacing it) keeps the rules.
            return self._policy
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._policy = ACLPolicy(read_acl_file(self.path))
                except ConfigError as exc:
                    log.error(
                        "acl file refused; the previous rules stay", extra={"reason": str(exc)}
                    )
                else:
                    log.info(
                        "acl reloaded", extra={"path": str(self.path), "rules": len(self._policy)}
                    )
        return self._policy

    def explain(self, requester: Requester, requested: Sequence[Access]) -> list[Decision]:
        return self.current().explain(requester, requested)

    def filter(self, requester: Requester, requested: Sequence[Access]) -> list[Access]:
        return self.current().filter(requester, requested)

"""What both command lines share: `group verb` commands that take --config, the
configuration file they read, and how a run ends (a refusal is one line on stderr
and exit status 2)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from authcore.settings import find_config

__all__ = ["CommandLine", "Group", "config_file", "run"]

Group = argparse._SubParsersAction  # the verbs under one command group
Command = Callable[[argparse.Namespace], None]


class CommandLine:
    """A parser whose every command takes `--config` (or `$config_env`)."""

    def __init__(self, prog: str, description: str | None, config_env: str) -> None:
        self.parser = argparse.ArgumentParser(prog=prog, description=description)
        self._common = argparse.ArgumentParser(add_help=False)
        self._common.add_argument("--config", help=f"YAML configuration file (or ${config_env})")
        self._commands = self.parser.add_subparsers(dest="command", required=True)

    def group(self, name: str, help: str, dest: str) -> Group[argparse.ArgumentParser]:
        """A command of verbs, as `user add` and `user del`."""
        return self._commands.add_parser(name, help=help).add_subparsers(dest=dest, required=True)

    def command(
        self,
        name: str,
        func: Command,
        help: str,
        group: Group[argparse.ArgumentParser] | None = None,
    ) -> argparse.ArgumentParser:
        """A command (or a group's verb) that runs `func`; add its own arguments to it."""
        parser = (group or self._commands).add_parser(name, parents=[self._common], help=help)
        parser.set_defaults(func=func)
        return parser


def config_file(given: str | None, prog: str, env_var: str, dev_file: str) -> Path:
    """The configuration a command reads; saying so when it is `make run`'s."""
    path, dev = find_config(given, env_var, dev_file)
    if dev:
        print(f"{prog}: using the dev configuration {path}", file=sys.stderr)
    return path


def run(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    refusals: tuple[type[Exception], ...],
) -> int:
    """Parse `argv`, run the chosen command; its `refusals` are messages, not tracebacks."""
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except refusals as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    return 0

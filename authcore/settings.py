"""Settings models read from YAML and overridden by environment variables.

`PREFIX_SECTION_KEY=value` sets `section.key`; underscores inside key names
are resolved against the model (`TOKEN_KEYS_DIR` is `token.keys_dir`).
Values are read as YAML (lists, booleans, numbers) except for plain string
and path keys, which take the value as it is (`[::1]:5001`, `*`).
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, SecretStr, ValidationError

__all__ = ["DEV_DIR", "ConfigError", "find_config", "load_settings"]

M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key."""


# Where `make run` writes its configuration, relative to the checkout.
DEV_DIR = Path("var") / "dev"


def find_config(
    given: str | None, env_var: str, dev_file: str, environ: Mapping[str, str] | None = None
) -> tuple[Path, bool]:
    """The configuration file a command uses, and whether it is `make run`'s.

    `--config` first, then `$env_var`, then the dev configuration `make run`
    wrote, when the command runs in the checkout. Never nothing: a command
    without a configuration would quietly create a database or storage
    nobody asked for.
    """
    environ = os.environ if environ is None else environ
    chosen = given or environ.get(env_var)
    if chosen:
        return Path(chosen), False
    candidate = DEV_DIR / dev_file
    if candidate.is_file():
        return candidate.absolute(), True
    raise ConfigError(
        f"no configuration: give --config FILE or set {env_var} "
        f"(`make run` writes {DEV_DIR / dev_file} and prints the line to set it)"
    )


def _env_path(model: type[BaseModel], parts: list[str]) -> list[str] | None:
    """Map `TOKEN_KEYS_DIR` onto the field path `token.keys_dir`."""
    if not parts:
        return None
    for n in range(len(parts), 0, -1):
        name = "_".join(parts[:n])
        field = model.model_fields.get(name)
        if field is None:
            continue
        rest = parts[n:]
        if not rest:
            return [name]
        section = _section(field.annotation)
        if section is not None:
            sub = _env_path(section, rest)
            if sub is not None:
                return [name, *sub]
    return None


# Keys whose environment value is taken verbatim rather than parsed as YAML.
_VERBATIM: tuple[object, ...] = (str, str | None, Path, Path | None, SecretStr | None)


def _section(annotation: object) -> type[BaseModel] | None:
    """The settings model of a field: `Model`, or `Model | None` for an optional section."""
    candidates = typing.get_args(annotation) if typing.get_origin(annotation) in _UNIONS else ()
    for candidate in (annotation, *candidates):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


_UNIONS: tuple[object, ...] = (typing.Union, types.UnionType)


def _annotation(model: type[BaseModel], path: list[str]) -> object:
    for name in path[:-1]:
        section = _section(model.model_fields[name].annotation)
        assert section is not None  # _env_path only walks into sections
        model = section
    return model.model_fields[path[-1]].annotation


def _apply_env(
    model: type[BaseModel], prefix: str, data: dict[str, Any], environ: Mapping[str, str]
) -> None:
    for var, raw in sorted(environ.items()):
        if not var.startswith(prefix) or var == f"{prefix}CONFIG":
            continue
        path = _env_path(model, var[len(prefix) :].lower().split("_"))
        if path is None:
            raise ConfigError(f"{var}: no such configuration key")
        node = data
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        if not raw or _annotation(model, path) in _VERBATIM:
            node[path[-1]] = raw
            continue
        try:
            node[path[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{var}: not a valid value") from exc


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{key}: {msg}")
    return "invalid configuration: " + "; ".join(lines)


def load_settings(
    model: type[M], prefix: str, path: Path | None = None, environ: Mapping[str, str] | None = None
) -> M:
    """Read the YAML file (if any), apply `prefix`ed environment overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        data = loaded or {}
    _apply_env(model, prefix, data, os.environ if environ is None else environ)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None

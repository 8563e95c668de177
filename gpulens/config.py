"""Typed configuration: YAML file < GPULENS_* environment < command-line flags, into frozen dataclasses.

Every problem is collected before failing, and each is one line naming the key and the allowed
values, so an operator fixes a config in one go instead of one crash loop per typo.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import Any, TypeVar

import yaml

ENV_PREFIX = "GPULENS_"
T = TypeVar("T")


class ConfigError(ValueError):
    """Bad configuration: `problems` holds one line per wrong key; the CLI prints them and exits 2."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def opt(default: Any, help: str, choices: tuple[str, ...] = (), minimum: float | None = None,
        maximum: float | None = None) -> Any:
    """A config field with its help text (shown by --help) and its allowed values."""
    meta = {"help": help, "choices": choices, "minimum": minimum, "maximum": maximum}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _type_of(cls: type, f: dataclasses.Field[Any]) -> type:
    hint = typing.get_type_hints(cls)[f.name]
    if isinstance(hint, types.UnionType):  # `str | None`: validate against the non-None member
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _coerce(raw: Any, want: type, from_text: bool) -> Any:
    """Convert one value to the field's type; raises ValueError with the wanted type's name."""
    if want is bool:
        if isinstance(raw, bool):
            return raw
        if from_text and str(raw).lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return str(raw).lower() in ("1", "true", "yes", "on")
        raise ValueError("a boolean (true|false)")
    if want is int:
        if isinstance(raw, bool) or not (isinstance(raw, int) or from_text):
            raise ValueError("an integer")
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ValueError("an integer") from None
    if want is float:
        if isinstance(raw, bool) or not (isinstance(raw, (int, float)) or from_text):
            raise ValueError("a number")
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError("a number") from None
        if not math.isfinite(value):
            raise ValueError("a finite number")
        return value
    if want is str:
        if isinstance(raw, (dict, list)):
            raise ValueError("a string")
        return "" if raw is None else str(raw)
    raise TypeError(f"unsupported config type {want!r}")


def load(
    cls: type[T],
    file: str | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    warn: Callable[[str], None] | None = None,
) -> T:
    """Build `cls` from a YAML file, then GPULENS_<KEY> env vars, then flags (highest precedence).

    A GPULENS_* variable that names no setting is reported through `warn` (one line each): a typo in
    a DaemonSet's env would otherwise be silently ignored.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    allowed = ", ".join(fields)
    problems: list[str] = []
    values: dict[str, Any] = {}
    # (how to name a key from this source in an error, its values, whether values arrive as text)
    sources: list[tuple[Callable[[str], str], Mapping[str, Any], bool]] = []

    if file:
        try:
            with open(file, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        except OSError as err:
            raise ConfigError([f"config file {file}: {err.strerror}"]) from err
        except yaml.YAMLError as err:
            raise ConfigError([f"config file {file}: not valid YAML: {str(err).splitlines()[0]}"]) from err
        if not isinstance(data, dict):
            raise ConfigError([f"config file {file}: expected a mapping of keys (allowed: {allowed})"])
        for key in data:
            if key not in fields:
                problems.append(f"config file {file}: unknown key '{key}' (allowed: {allowed})")
        sources.append((lambda n: f"config file {file}: key '{n}'", {k: v for k, v in data.items() if k in fields}, False))

    env = os.environ if env is None else env
    env_values = {k[len(ENV_PREFIX):].lower(): v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    if warn is not None:
        for name in sorted(set(env_values) - set(fields)):
            warn(f"environment variable {ENV_PREFIX}{name.upper()} names no setting; ignored "
                 f"(settings: {', '.join(ENV_PREFIX + f.upper() for f in fields)})")
    sources.append((lambda n: f"environment variable {ENV_PREFIX}{n.upper()}",
                    {k: v for k, v in env_values.items() if k in fields}, True))
    sources.append((lambda n: "flag --" + n.replace("_", "-"), {k: v for k, v in (flags or {}).items() if v is not None}, True))

    for name_key, given, from_text in sources:
        for name, raw in given.items():
            f = fields[name]
            label = name_key(name)
            try:
                value = _coerce(raw, _type_of(cls, f), from_text)
            except ValueError as err:
                problems.append(f"{label}: {raw!r} is not {err}")
                continue
            choices = f.metadata.get("choices") or ()
            if choices and value not in choices:
                problems.append(f"{label}: {value!r} is not allowed (allowed: {', '.join(choices)})")
                continue
            minimum, maximum = f.metadata.get("minimum"), f.metadata.get("maximum")
            if minimum is not None and value < minimum:
                problems.append(f"{label}: {value!r} is below the minimum {minimum}")
                continue
            if maximum is not None and value > maximum:
                problems.append(f"{label}: {value!r} is above the maximum {maximum}")
                continue
            values[name] = value

    if problems:
        raise ConfigError(problems)
    return cls(**values)

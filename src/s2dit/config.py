"""Configs: dataclasses, YAML files and dotted command-line overrides.

A config is a (nested) dataclass. It is built from, in order: the dataclass defaults, an optional YAML
file, then ``--set a.b=value`` overrides (values are parsed as YAML scalars, so ``--set video.fps=8``
gives an int and ``--set name=abc`` a string). Every step is validated with one-line errors
(:class:`~s2dit.errors.ConfigError`): unknown keys (with a suggestion), wrong types, and the value
rules that each dataclass checks in its ``__post_init__``.

Commands that write outputs save the resolved config beside them with :func:`save_config`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from s2dit.atomic import write_text_atomic
from s2dit.errors import ConfigError
from s2dit.files import read_yaml

T = TypeVar("T")


# ----------------------------------------------------------------------------------------------------
# Shared config pieces
# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class VideoSpec:
    """The pixel format of a clip: size, frame count and frame rate (docs/architecture.md §2)."""

    width: int = 256  # pixels; divisible by 16 (8× VAE downsampling, then 2×2 patches)
    height: int = 144  # pixels; divisible by 16
    frames: int = 33  # 4k+1 (the VAE compresses time 4×, keeping the first frame)
    fps: float = 16.0

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if value <= 0 or value % 16:
                raise ConfigError(f"{name}: {value} is not a positive multiple of 16 (e.g. 256x144, 512x288)")
        if self.frames < 1 or (self.frames - 1) % 4:
            below = max(1, 4 * ((self.frames - 1) // 4) + 1)
            raise ConfigError(
                f"frames: {self.frames} is not of the form 4k+1 (nearest: {below} or {below + 4})"
            )
        if not math.isfinite(self.fps) or self.fps <= 0:
            raise ConfigError(f"fps: {self.fps} must be positive")

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def latent_frames(self) -> int:
        """Latent frames T = 1 + (F - 1) / 4."""
        return 1 + (self.frames - 1) // 4


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"WxH"`` (e.g. ``"256x144"``) into ``(width, height)``; divisibility is checked by VideoSpec."""
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"size: {text!r} should look like WIDTHxHEIGHT, e.g. 256x144")
    return int(parts[0]), int(parts[1])


# ----------------------------------------------------------------------------------------------------
# dict <-> dataclass
# ----------------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (nested dataclasses, int -> float)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        items = [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {type(value).__name__} {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected int, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _FLOAT_LITERAL.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected float, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected str, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"unsupported config annotation {_type_name(tp)} for {key}")  # a bug, not a user error


_FLOAT_LITERAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a nested dict, with type checks and one-line errors.

    Missing keys take the dataclass defaults; unknown keys are an error that suggests the closest name.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f" (valid: {', '.join(fields)})"
            raise ConfigError(f"unknown key {f'{prefix}{key}'!r}{hint}")  # repr: one line whatever the key
        kwargs[key] = _convert(value, hints[key], f"{prefix}{key}")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        # Value rules raised by __post_init__ name the field only; add where it sits.
        raise ConfigError(f"{prefix}{e}") from None


def to_dict(obj: Any) -> dict[str, Any]:
    """A plain nested dict of a config dataclass (the YAML form)."""
    return dataclasses.asdict(obj)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def describe_changes(old: Any, new: Any) -> str:
    """One line listing the dotted keys where two configs differ: ``"a.b: 1 -> 2, c: x -> y"``."""
    a, b = flatten(to_dict(old)), flatten(to_dict(new))
    return ", ".join(
        f"{k}: {a.get(k)} -> {b.get(k)}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)
    )


# ----------------------------------------------------------------------------------------------------
# YAML files and overrides
# ----------------------------------------------------------------------------------------------------


def _read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    return read_yaml(path)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to a nested dict (a copy); values are parsed as YAML."""
    out = yaml.safe_load(yaml.safe_dump(data))  # deep copy of plain data
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} should look like key.sub=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: '{'.'.join(parts[: i + 1])}' is not a section")
            node = child
        node[parts[-1]] = value
    return out


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Defaults of ``cls`` <- YAML file at ``path`` <- dotted ``overrides``; validated."""
    data = _read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    return from_dict(cls, data)


def save_config(obj: Any, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    write_text_atomic(path, yaml.safe_dump(to_dict(obj), sort_keys=False))

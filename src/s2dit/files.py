"""Reading the files a user hands us: YAML and JSON documents and safetensors weights.

Each reader returns the file's content or raises one :class:`~s2dit.errors.S2DitError` that names the file
and what is wrong with it (missing, empty, truncated, not valid YAML/JSON, the wrong kind of document), so
a damaged download ends in one ``error:`` line instead of a parser's traceback. None of them can run code
from the file: YAML is read with ``safe_load``, weights only from safetensors.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from s2dit.errors import ConfigError, S2DitError


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping at the top of a YAML file (``{}`` for an empty file)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError, RecursionError) as e:
        raise ConfigError(f"{path}: not a readable YAML file ({_first_line(e)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def read_json(path: str | os.PathLike, *, mapping: bool = True) -> Any:
    """The document in a JSON file; with ``mapping``, it must be an object. NaN and infinities (which the
    JSON standard does not allow) are refused too."""
    path = Path(path)
    if not path.is_file():
        raise S2DitError(f"{path} not found")

    def refuse_constant(name: str) -> float:
        raise ValueError(f"{name} is not a JSON number")

    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse_constant)
    except (ValueError, UnicodeDecodeError, OSError, RecursionError) as e:
        raise S2DitError(f"{path}: not a readable JSON file ({_first_line(e)})") from None
    if mapping and not isinstance(data, dict):
        raise S2DitError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
    return data


def _safetensors_error(path: Path, error: BaseException) -> S2DitError:
    size = path.stat().st_size if path.is_file() else 0
    state = "empty" if size == 0 else f"{size} bytes, truncated or not safetensors"
    return S2DitError(f"{path}: cannot read the weights ({state}: {_first_line(error)})")


def load_safetensors(path: str | os.PathLike) -> dict:
    """Every tensor of a safetensors file, on the CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise S2DitError(f"{path} not found")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise _safetensors_error(path, e) from None


@contextlib.contextmanager
def open_safetensors(path: str | os.PathLike) -> Iterator[Any]:
    """``safetensors.safe_open(path, "pt")`` for reading some tensors lazily; a damaged file is refused
    when opened, and a tensor that cannot be read when asked for."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise S2DitError(f"{path} not found")
    try:
        handle = safe_open(path, "pt")
    except (SafetensorError, OSError, ValueError) as e:
        raise _safetensors_error(path, e) from None
    with handle as f:
        yield f

"""What the command groups share: the console, tables, help texts, the ``--json`` report, argument checks."""

from __future__ import annotations

import dataclasses
import inspect
import json
import typing
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from s2dit.errors import S2DitError

console = Console()

CONFIG_HELP = "YAML config file (defaults are the built-in ones)."
SET_HELP = "Dotted override, repeatable: --set video.fps=8."


def cell(value) -> str:
    """A report value as a table cell: floats to 3 decimals, lists space-separated."""
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value)


def make_table(title: str, columns: tuple[str, ...], rows) -> Table:
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*map(str, r))
    return table


def write_json(path: Path, report) -> None:
    """Write a command's ``--json`` report (indented one space), atomically."""
    from s2dit.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(report, indent=1))


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def check_device(device: str) -> None:
    if device not in ("cpu", "cuda") or (device == "cuda" and not cuda_available()):
        raise S2DitError(f"--device {device!r}: choose cpu, or cuda on a machine with a GPU")


def check_dtype(dtype: str, device: str):
    """The torch dtype ``--dtype`` (auto, float32 or bfloat16) computes in on ``device``."""
    from s2dit.precision import PRECISIONS, compute_dtype

    if dtype not in PRECISIONS:
        raise S2DitError(f"--dtype {dtype!r}: choose auto, float32 or bfloat16")
    check_device(device)
    return compute_dtype(dtype, device)


def speaks_micro(checkpoint: Path | None) -> bool:
    """Whether a checkpoint takes micro-world prompts (it reads them with the micro world's text encoder)."""
    if checkpoint is None or not checkpoint.exists():
        return False
    from s2dit.diffusion.pipeline import read_pipeline

    return read_pipeline(checkpoint).text == "minilm"


def check_text(texts: list[str], what: str = "the prompt") -> None:
    """Refuse text that is not valid Unicode: argument bytes that are not UTF-8 reach Python as lone
    surrogates, which no tokenizer takes."""
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            shown = text.encode("utf-8", "backslashreplace").decode()
            raise S2DitError(f"{what} '{shown}' is not valid UTF-8 text") from None


def warn_unknown_words(prompts: list[str], checkpoint: Path | None) -> None:
    """One line on stderr per micro-world prompt naming what the micro world cannot draw."""
    if not speaks_micro(checkpoint):
        return
    from s2dit.data.micro.captions import unknown_words_warning

    for prompt in prompts:
        if warning := unknown_words_warning(prompt):
            typer.echo(f"warning: {warning}", err=True)


KEYWORD = inspect.Parameter.KEYWORD_ONLY


def config_options(
    cls, helps: dict[str, str], required: tuple[str, ...] = (), names: dict[str, str] | None = None
):
    """Decorate a command so that it takes one option per field of the config dataclass ``cls`` named in
    ``helps`` (``--field-name``, its type and default read from the dataclass, so that no default is written
    twice), and receives them built into ``config: cls``. ``required`` fields have no default on the command
    line; ``names`` gives a field another option name (``{"batch_size": "batch"}``: ``--batch``). The
    command's own parameters (all but ``config``) follow them, as declared."""

    names = names or {}

    def decorate(command):
        own = typing.get_type_hints(command)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        types = typing.get_type_hints(cls)
        params = []
        for name, text in helps.items():
            field = fields[name]
            default = field.default
            if field.default_factory is not dataclasses.MISSING:
                default = field.default_factory()
            option = typer.Option(... if name in required else default, help=text)
            param = inspect.Parameter(names.get(name, name), KEYWORD, annotation=types[name], default=option)
            params.append(param)
        params += [
            p.replace(annotation=own[p.name], kind=KEYWORD)
            for p in inspect.signature(command).parameters.values()
            if p.name != "config"
        ]

        def run(**values):
            config = cls(**{name: values.pop(names.get(name, name)) for name in helps})
            return command(config=config, **values)

        run.__name__, run.__doc__ = command.__name__, command.__doc__
        run.__signature__ = inspect.Signature(params)
        run.__annotations__ = {p.name: p.annotation for p in params}
        return run

    return decorate

"""The ``s2dit`` command. Commands only parse arguments and call library functions.

User mistakes (:class:`~s2dit.errors.S2DitError`) print one ``error:`` line and exit with status 2.

One module per command group (``s2dit data ...`` is in ``data.py``); ``generate.py`` has the top-level
``generate``, ``stream`` and ``serve``; ``common.py`` what they share. This module is the root command.
"""

from __future__ import annotations

import sys

import typer

from s2dit.cli import bench, data, distill, eval, export, generate, model, search, train
from s2dit.errors import S2DitError

app = typer.Typer(
    name="s2dit",
    help="S2DiT: the Streaming Sandwich Diffusion Transformer (text-to-video streaming on small devices).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# The order of s2dit --help: the top-level commands, then the groups.
app.add_typer(data.app, name="data")
app.add_typer(eval.app, name="eval")
app.add_typer(model.app, name="model")
app.add_typer(train.app, name="train")
app.add_typer(bench.app, name="bench")
app.add_typer(distill.app, name="distill")
app.add_typer(export.app, name="export")
app.add_typer(search.app, name="search")
app.command("generate")(generate.generate)
app.command("stream", help=generate.stream_help())(generate.stream)
app.command("serve")(generate.serve)


@app.callback()
def _global_options(
    verbose: bool = typer.Option(
        False, "--verbose", help="Also show third-party libraries' warnings, log lines and loading bars."
    ),
) -> None:
    """The options before the command: s2dit --verbose stream ..."""
    if not verbose:
        from s2dit.quiet import quiet

        quiet()  # before any command imports torch, transformers or diffusers


def main() -> None:
    try:
        app()
    except S2DitError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)

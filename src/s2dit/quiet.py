"""Quiet by default: what third-party libraries print on their own is hidden unless ``s2dit --verbose``.

Installed with the ``export`` extra, torchao is imported by transformers and diffusers whenever a text
encoder or a diffusers model loads, and it logs a failed load of each CUDA kernel library it ships
("Failed to load ..._C_mxfp8....so"), registers pytree constants that torch's logger calls deprecated,
and makes diffusers log "Unable to import `torchao` Tensor objects"; transformers draws a "Loading
weights" bar for MiniLM. None of it is about what the user asked. :func:`quiet` runs before any of these
libraries is imported (the CLI imports them inside commands):

* environment switches the libraries read at import: ``TORCH_LOGS=-all`` (torch's own log handler at
  errors only), ``TRANSFORMERS_VERBOSITY`` / ``DIFFUSERS_VERBOSITY=error``, and
  ``HF_HUB_DISABLE_PROGRESS_BARS=1``, which transformers' progress bars follow; a variable the user set
  is kept;
* the Python loggers of those libraries at ERROR;
* Python warnings shown only when they are raised from s2dit's own code, as one ``warning: ...`` line.

Our own progress bars (tqdm on stderr) and result lines are untouched.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

ENVIRONMENT = {
    "TORCH_LOGS": "-all",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "DIFFUSERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}
LOGGERS = ("torch", "torchao", "transformers", "diffusers", "huggingface_hub", "executorch", "coremltools")

_PACKAGE = str(Path(__file__).resolve().parent)


def quiet() -> None:
    """Hide third-party warnings, log lines and loading bars for the rest of the process."""
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.showwarning = _show_our_warnings


def _show_our_warnings(message, category, filename, lineno, file=None, line=None) -> None:
    # A warning is attributed to the frame its stacklevel names: ours name s2dit code.
    if str(filename).startswith(_PACKAGE + os.sep):
        print(f"warning: {message}", file=file or sys.stderr)

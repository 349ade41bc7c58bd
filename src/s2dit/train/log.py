"""Metrics to the console (a progress bar), a JSONL file and TensorBoard (when installed): the log of every
s2dit training run, ``train_log.jsonl`` (one JSON object per line, with its ``step``)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from s2dit.atomic import write_text_atomic


def mean_rows(rows: list[dict[str, float]]) -> dict[str, float]:
    """Each key's mean over the rows that have it (keys in order of first appearance)."""
    keys = dict.fromkeys(k for row in rows for k in row)
    values = {k: [row[k] for row in rows if k in row] for k in keys}
    return {k: sum(v) / len(v) for k, v in values.items()}


class MetricLog:
    """Rank 0's run log. On resume, rows past the resumed step (from a killed run) are dropped first, so
    the file reads like one uninterrupted run. ``tensorboard``: also write the scalars under
    ``tensorboard/`` (when TensorBoard is installed)."""

    def __init__(self, folder: Path, resume_step: int, enabled: bool = True, tensorboard: bool = True):
        self.enabled, self.path, self.tb = enabled, folder / "train_log.jsonl", None
        if not enabled:
            return
        if self.path.is_file():
            rows = [ln for ln in self.path.read_text().splitlines() if ln.strip()]
            kept = [ln for ln in rows if _step(ln) <= resume_step]
            write_text_atomic(self.path, "".join(ln + "\n" for ln in kept))
        self.file = open(self.path, "a")  # noqa: SIM115 - closed in close()
        if not tensorboard:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(folder / "tensorboard"), purge_step=resume_step + 1)
        except ImportError:
            warnings.warn("tensorboard is not installed: logging to train_log.jsonl only", stacklevel=2)

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, int | float):
                    self.tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.tb is not None:
                self.tb.close()


def _step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return 1 << 62  # a torn last line: drop it


def read_log(folder: str | Path) -> list[dict]:
    path = Path(folder) / "train_log.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []

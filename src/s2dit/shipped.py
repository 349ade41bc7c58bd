"""The shipped models: the micro world's checkpoints kept in git under ``weights/``, the defaults of
``s2dit stream``, ``s2dit serve`` (the S2DiT-AR, ``weights/micro_ar``) and ``s2dit generate`` (the teacher,
``weights/micro_teacher``).

``weights/`` is found beside the source: the package is installed editable from a clone of the repository
(``pip install -e .``), so ``src/s2dit/`` sits two folders below the repository root. The weights are not
package data: they are large, replaced as better ones are trained, and their ``pipeline.yaml`` names their
VAE by a path relative to its own folder (``../micro_vae_v1``), which needs them kept together.
"""

from __future__ import annotations

from pathlib import Path

from s2dit.errors import S2DitError

REPO = Path(__file__).resolve().parents[2]  # src/s2dit/shipped.py -> the repository root
WEIGHTS = REPO / "weights"
STREAM_MODEL = "micro_ar"  # s2dit stream / serve
GENERATE_MODEL = "micro_teacher"  # s2dit generate


def shipped_model(name: str) -> Path:
    """The folder of shipped model ``name`` (``weights/<name>``); an error says how to get one if missing."""
    folder = WEIGHTS / name
    if not (folder / "pipeline.yaml").is_file():
        raise S2DitError(
            f"the shipped model {name} is not at {folder}: s2dit looks for weights/ in the clone it was "
            "installed from (pip install -e .); install it that way, or pass --checkpoint PATH"
        )
    return folder

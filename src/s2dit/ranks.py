"""This process's place among torchrun's processes, read from the environment (no process group needed)."""

from __future__ import annotations

import os

from s2dit.errors import S2DitError


def rank_and_world() -> tuple[int, int]:
    """torchrun's RANK and WORLD_SIZE (0 and 1 outside torchrun); no process group needed."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if not 0 <= rank < world:
        raise S2DitError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return rank, world

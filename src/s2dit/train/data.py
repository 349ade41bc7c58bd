"""Deterministic global batches over an encoded latent folder.

The run reads one endless stream of sample *positions*: position ``p`` is clip ``perm_e[p mod N]`` of epoch
``e = p div N``, where ``perm_e`` is a permutation seeded by ``(seed, e)``. Step ``k`` takes positions
``k·B … k·B + B - 1`` (``B`` the global batch); each accumulation step and each rank takes its own
contiguous slice. The data position of a checkpoint is therefore just ``step·B``, and the batches do not
depend on the number of processes: the property the resume and DDP/FSDP parity tests rely on.

Randomness per sample (noise, noise level, prompt dropout) comes from a generator seeded by
``(seed, position)`` for the same reason.
"""

from __future__ import annotations

import torch

from s2dit.data.encode import LatentShardDataset
from s2dit.errors import S2DitError
from s2dit.latent.text import pad_text


def sample_generator(seed: int, position: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + position) % (2**63))


class Epochs:
    """Global sample position -> item index: position ``p`` is item ``perm_e[p mod N]`` of epoch
    ``e = p div N``, a fresh permutation per epoch seeded by ``(seed, e)``."""

    def __init__(self, size: int, seed: int):
        self.train_size, self.seed = size, seed
        self._perms: dict[int, list[int]] = {}

    def index(self, position: int) -> int:
        epoch, k = divmod(position, self.train_size)
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
            self._perms = {epoch: torch.randperm(self.train_size, generator=g).tolist()}
        return self._perms[epoch][k]


class LatentBatches(Epochs):
    """Training (and held-out) clips of a latent folder, addressed by global sample position."""

    def __init__(self, folder: str, text_len: int, holdout: int, seed: int):
        self.dataset = LatentShardDataset(folder)
        train_size = len(self.dataset) - holdout
        if train_size < 1:
            raise S2DitError(
                f"{folder} has {len(self.dataset)} clips: too few to hold out {holdout} for evaluation"
            )
        super().__init__(train_size, seed)
        self.holdout = list(range(train_size, len(self.dataset)))
        self.text_len = text_len

    def clips(self, indices: list[int]) -> dict:
        """Clips by dataset index: latents ``[b, C, T, H, W]``, text ``[b, text_len, D]``, mask, rows."""
        items = [self.dataset[i] for i in indices]
        text, mask = pad_text([it["text"] for it in items], self.text_len)
        return {
            "latents": torch.stack([it["latents"] for it in items]),
            "text": text,
            "mask": mask,
            "rows": [{k: v for k, v in it.items() if k not in ("latents", "text")} for it in items],
        }

    def batch(self, positions: list[int]) -> dict:
        out = self.clips([self.index(p) for p in positions])
        out["positions"] = positions
        return out

    def null_text(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The empty prompt, padded like every prompt: ``[1, text_len, D]``, ``[1, text_len]``."""
        return pad_text([self.dataset.null_text()], self.text_len)


def rank_positions(step: int, micro: int, batch_size: int, accum: int, rank: int, world: int) -> list[int]:
    """The positions rank ``rank`` reads at accumulation step ``micro`` of optimiser step ``step``."""
    per_micro = batch_size // accum
    per_rank = per_micro // world
    start = step * batch_size + micro * per_micro + rank * per_rank
    return list(range(start, start + per_rank))

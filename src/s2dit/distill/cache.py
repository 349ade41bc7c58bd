"""``s2dit distill cache``: the offline teacher trajectory cache of 2-in-1 distillation
(docs/architecture.md §7).

For every prompt the teacher integrates its probability-flow ODE from seeded noise with Euler steps and
classifier-free guidance ``u + g·(c - u)`` (negative prompt as ``u``), recording the state at every level.
Each sample is one safetensors file, ``sample-NNNNNN.safetensors``:

* ``states [K, C, T, H, W]``: kept trajectory states, from the noise (σ = 1) to the final latents (σ = 0);
* ``sigmas [K]``: their noise levels; ``text [L, D]``: the prompt's embedding, trimmed to its valid tokens;
* metadata: the prompt and the seed.

``cache.json`` records how the cache was made (teacher, steps, shift, CFG form and scale, negative prompt,
seeds, kept levels, latent shape, text encoder); a rerun with other settings is refused. Files are written
atomically; a rerun checks every existing file (it opens and has the expected shapes) and redoes any that does
not, so an interrupted or damaged cache is completed, never trusted blindly. Under torchrun, sample ``i``
belongs to rank ``i mod WORLD_SIZE``; the last rank to finish writes the ``COMPLETE`` marker.
:class:`TrajectoryCache` reads a finished cache.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from s2dit.atomic import atomic_path, write_text_atomic
from s2dit.diffusion.flow import NUM_TRAIN_TIMESTEPS, frame_noise
from s2dit.diffusion.sampling import Condition, euler, guided, sigma_schedule
from s2dit.distill.cache_config import CacheConfig
from s2dit.errors import S2DitError
from s2dit.files import read_json
from s2dit.latent.text import pad_text
from s2dit.train.data import Epochs

COMPLETE = "COMPLETE"


def sample_path(out: Path, i: int) -> Path:
    return out / f"sample-{i:06d}.safetensors"


def _is_whole(path: Path, shape: tuple[int, ...], levels: int) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(path, "pt") as f:
            states = f.get_slice("states").get_shape()
            return list(states) == [levels, *shape] and list(f.get_slice("sigmas").get_shape()) == [levels]
    except Exception:  # unreadable, truncated or foreign: redo it
        return False


def build_cache(cfg: CacheConfig, device: str = "cpu", progress: bool = True) -> dict:
    """Make (or complete) the cache; returns a summary."""
    from safetensors.torch import save_file
    from tqdm import tqdm

    from s2dit.data.micro.metrics import load_prompts
    from s2dit.diffusion.pipeline import read_pipeline
    from s2dit.latent.text import load_text_encoder
    from s2dit.model.denoiser import load_denoiser, text_dim
    from s2dit.ranks import rank_and_world

    if not cfg.teacher or not Path(cfg.teacher).exists():
        raise S2DitError(f"--teacher {cfg.teacher!r} does not exist")
    stored = None  # an encoded latent folder: its captions with their stored embeddings
    if Path(cfg.prompts).is_dir():
        from s2dit.data.encode import LatentShardDataset

        stored = LatentShardDataset(cfg.prompts)
        prompts = [row.get("caption", "") for _, _, row in stored.items]
    else:
        prompts = [r["caption"] for r in load_prompts(cfg.prompts)]
    if cfg.count:
        if cfg.count > len(prompts):
            raise S2DitError(f"--count {cfg.count}: {cfg.prompts} holds only {len(prompts)} prompts")
        prompts = prompts[: cfg.count]
    info = read_pipeline(cfg.teacher)
    shape = list(info.latent_shape)
    if cfg.frames:
        shape[1] = cfg.frames
    shift = cfg.shift if cfg.shift is not None else info.shift
    sigmas = sigma_schedule(cfg.steps, shift)
    levels = cfg.kept_levels()
    meta = {
        "schema": "s2dit.trajectories/1",
        "teacher": str(cfg.teacher),
        "text_encoder": info.text,
        "text_len": info.text_len,
        "prompts_file": str(cfg.prompts),
        "samples": len(prompts),
        "steps": cfg.steps,
        "shift": shift,
        "sampler": "euler",
        "cfg_form": "u + g*(c - u)",
        "cfg": cfg.cfg,
        "negative_prompt": cfg.negative,
        "seed": cfg.seed,
        "seeds": "sample i: seed + i",
        "latent_shape": shape,
        "kept_levels": levels,
        "sigmas": [sigmas[j] for j in levels],
    }
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "cache.json"
    if saved.is_file():
        old = read_json(saved)
        changed = sorted(k for k in meta if old.get(k) != meta[k])
        if changed:
            raise S2DitError(
                f"{out} holds a cache made with other settings ({', '.join(changed)}): use another --out"
            )
    rank, world = rank_and_world()
    if rank == 0:
        write_text_atomic(saved, json.dumps(meta, indent=1))
    mine = [i for i in range(len(prompts)) if i % world == rank]
    todo = [i for i in mine if not _is_whole(sample_path(out, i), tuple(shape), len(levels))]

    dev = torch.device(device)
    if todo:
        model = load_denoiser(cfg.teacher, dev)
        encoder = None

        def encode(text: str) -> torch.Tensor:
            nonlocal encoder
            encoder = encoder or load_text_encoder(info.text, info.text_len)
            tokens, mask = encoder.encode([text])
            return tokens[0][mask[0]]

        def embed(i: int) -> torch.Tensor:
            return stored[i]["text"].float() if stored is not None else encode(prompts[i])

        neg = stored.null_text().float() if stored is not None and not cfg.negative else encode(cfg.negative)
        if neg.shape[-1] != text_dim(model):
            raise S2DitError(
                f"the text encoder gives {neg.shape[-1]}-d tokens, the teacher expects {text_dim(model)}"
            )
    with tqdm(
        total=len(todo), desc=f"trajectories (rank {rank})", unit="sample", disable=not progress
    ) as bar:
        for b in range(0, len(todo), cfg.batch):
            ids = todo[b : b + cfg.batch]
            texts = [embed(i) for i in ids]
            text, mask = pad_text(texts, info.text_len)
            ntext, nmask = pad_text([neg] * len(ids), info.text_len)
            noise = torch.stack(
                [
                    frame_noise(shape, torch.Generator().manual_seed(cfg.seed + i), info.noise_correlation)
                    for i in ids
                ]
            )
            velocity = guided(
                model,
                Condition(text.to(dev), mask.to(dev)),
                Condition(ntext.to(dev), nmask.to(dev)),
                cfg.cfg,
            )
            states: list[torch.Tensor] = []
            with torch.no_grad():
                euler(velocity, noise.to(dev), sigmas, record=states)
            kept = torch.stack([states[j] for j in levels], dim=1).float().cpu()  # (B, K, C, T, H, W)
            for n, i in enumerate(ids):
                tensors = {
                    "states": kept[n].contiguous(),
                    "sigmas": torch.tensor([sigmas[j] for j in levels], dtype=torch.float32),
                    "text": texts[n].float().contiguous(),
                }
                with atomic_path(sample_path(out, i)) as tmp:
                    save_file(tensors, str(tmp), metadata={"prompt": prompts[i], "seed": str(cfg.seed + i)})
            bar.update(len(ids))
    done = all(sample_path(out, i).is_file() for i in range(len(prompts)))
    if done:
        write_text_atomic(out / COMPLETE, f"{len(prompts)} samples\n")
    return {"out": str(out), "samples": len(prompts), "made": len(todo), "rank": rank, "complete": done}


class TrajectoryCache(torch.utils.data.Dataset):
    """A finished cache; items ``{"states" [K, C, T, H, W], "sigmas" [K], "timesteps" [K], "text" [L, D],
    "prompt"}``."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        if not (self.folder / COMPLETE).is_file():
            raise S2DitError(
                f"{self.folder} is not a complete trajectory cache (no {COMPLETE}): run s2dit distill cache"
            )
        self.meta = read_json(self.folder / "cache.json")

    def __len__(self) -> int:
        return self.meta["samples"]

    def __getitem__(self, i: int) -> dict:
        return self.read(i)

    def read(self, i: int, levels: list[int] | None = None) -> dict:
        """Sample ``i``; with ``levels``, only those kept states are read (``states [len(levels), ...]``)."""
        from safetensors import safe_open

        with safe_open(sample_path(self.folder, i), "pt") as f:
            item = {k: f.get_tensor(k) for k in ("sigmas", "text")}
            if levels is None:
                item["states"] = f.get_tensor("states")
            else:
                states = f.get_slice("states")
                item["states"] = torch.stack([states[j] for j in levels])
                item["sigmas"] = item["sigmas"][levels]
            item["prompt"] = f.metadata()["prompt"]
        item["timesteps"] = item["sigmas"] * NUM_TRAIN_TIMESTEPS
        return item


class TrajectoryBatches(Epochs):
    """A trajectory cache addressed by global sample position, like the trainer's latent batches.

    ``levels(position, sigmas) -> indices`` says which kept states a sample contributes (read alone, so a
    cache that keeps all 49 levels costs only what a step uses); ``sigmas`` are the cache's kept levels.
    """

    def __init__(self, folder: str, text_len: int, seed: int, levels):
        self.cache = TrajectoryCache(folder)
        super().__init__(len(self.cache), seed)
        self.sigmas = list(self.cache.meta["sigmas"])
        self.text_len, self.levels = text_len, levels

    def batch(self, positions: list[int]) -> dict:
        """``states [b, n, C, T, H, W]``, ``sigmas [b, n]``, padded ``text`` and ``mask``, ``positions``."""
        items = [self.cache.read(self.index(p), self.levels(p, self.sigmas)) for p in positions]
        text, mask = pad_text([it["text"] for it in items], self.text_len)
        return {
            "states": torch.stack([it["states"] for it in items]),
            "sigmas": torch.stack([it["sigmas"] for it in items]),
            "text": text,
            "mask": mask,
            "positions": positions,
        }

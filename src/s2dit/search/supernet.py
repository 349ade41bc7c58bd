"""The quality proxy of the layout search (docs/architecture.md §6): a weight-sharing supernet.

Every depth position holds one block of each candidate kind (its own weights per kind), every position may
open and close a low-resolution stage (its own entry and exit modules), and the embeddings and head are
shared. Each training step draws a kind per position (a random layout, seeded by the step) and takes a
flow-matching step through that layout. Afterwards each (position, kind) is scored on held-out clips: the
evaluation loss averaged over random layouts that put that kind at that position (the same layouts, noise
and noise levels for every kind). ``score = mean over kinds - loss``: higher is better, and only differences
within a position matter to the search.

The result is ``quality.json`` (schema ``s2dit.quality/1``, see :func:`validate_quality`), with how it was
made.
The run folder keeps ``checkpoints/step-N.pt`` (:mod:`s2dit.train.checkpoint`, every ``checkpoint_every``
steps, the newest two), so a killed run resumes.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from torch import nn

from s2dit.atomic import write_text_atomic
from s2dit.errors import S2DitError
from s2dit.files import read_json
from s2dit.model.blocks import Block
from s2dit.model.config import ModelConfig
from s2dit.model.ssa import StageDown, StageUp, stages
from s2dit.model.transformer import S2DiT
from s2dit.search.supernet_config import SupernetConfig

QUALITY_SCHEMA = "s2dit.quality/1"


class Supernet(nn.Module):
    """Blocks of every candidate kind at every position, stage modules at every position, one shared stem
    and head. :meth:`select` returns the shared :class:`S2DiT` wired to one layout's blocks."""

    def __init__(self, cfg: SupernetConfig):
        super().__init__()
        self.kinds = cfg.kinds
        base = ModelConfig(
            layout="L" * cfg.depth,
            width=cfg.width,
            heads=cfg.heads,
            ffn_dim=cfg.ffn_dim,
            text_dim=cfg.text_dim,
        )
        self.shell = S2DiT(base)
        for name in ("blocks", "stage_down", "stage_up"):  # the shell borrows these per layout
            del self.shell._modules[name]
        D = cfg.width
        self.bank = nn.ModuleList(
            nn.ModuleDict(
                {k: Block(k, D, cfg.heads, cfg.ffn_dim, tuple(base.conv_kernel)) for k in cfg.kinds}
            )
            for _ in range(cfg.depth)
        )
        self.down = nn.ModuleList(StageDown(D) for _ in range(cfg.depth))
        self.up = nn.ModuleList(StageUp(D) for _ in range(cfg.depth))
        for m in (*self.bank.modules(), *self.down.modules(), *self.up.modules()):
            if isinstance(m, nn.Linear):  # the init S2DiT gives its blocks
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        self.select(cfg.kinds[0] * cfg.depth)

    def select(self, layout: str) -> S2DiT:
        shell = self.shell
        runs = stages(layout)
        object.__setattr__(shell, "blocks", [self.bank[i][k] for i, k in enumerate(layout)])
        object.__setattr__(shell, "stage_down", [self.down[first] for first, _ in runs])
        object.__setattr__(shell, "stage_up", [self.up[last] for _, last in runs])
        shell.stages = runs
        return shell


def random_layout(kinds: str, depth: int, generator: torch.Generator) -> str:
    return "".join(kinds[i] for i in torch.randint(len(kinds), (depth,), generator=generator).tolist())


def validate_quality(data: object, depth: int | None = None, kinds: str | None = None) -> None:
    """Raise :class:`S2DitError` naming the first bad field of a quality file."""

    def fail(field: str, message: str):
        raise S2DitError(f"quality file: {field}: {message}")

    if not isinstance(data, dict):
        fail("(top level)", "must be a JSON object")
    if data.get("schema") != QUALITY_SCHEMA:
        fail("schema", f"must be {QUALITY_SCHEMA!r}, got {data.get('schema')!r}")
    if not isinstance(data.get("kinds"), str) or not data["kinds"]:
        fail("kinds", f"must be a string of kinds, got {data.get('kinds')!r}")
    scores = data.get("scores")
    if not isinstance(scores, list) or not scores:
        fail("scores", "must be a non-empty list (one object per depth position)")
    for i, row in enumerate(scores):
        if not isinstance(row, dict):
            fail(f"scores[{i}]", "must be an object of kind -> score")
        for k in data["kinds"]:
            v = row.get(k)
            if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
                fail(f"scores[{i}].{k}", f"must be a finite number, got {v!r}")
    if depth is not None and len(scores) != depth:
        fail("scores", f"has {len(scores)} positions, the search asks for depth {depth}")
    if kinds is not None and set(kinds) - set(data["kinds"]):
        fail("kinds", f"scores kinds {data['kinds']!r}, the search needs {kinds!r}")


def load_quality(path: str | os.PathLike, depth: int | None = None, kinds: str | None = None) -> dict:
    path = Path(path)
    if not path.is_file():
        raise S2DitError(f"quality file {path} not found (make one with: s2dit search supernet)")
    data = read_json(path, mapping=False)
    validate_quality(data, depth, kinds)
    return data


def train_supernet(cfg: SupernetConfig, device: str = "cpu", progress: bool = True) -> dict:
    """Train (or resume) the supernet, score every (position, kind), write ``quality.json``."""
    from tqdm import tqdm

    from s2dit.config import to_dict
    from s2dit.train import checkpoint
    from s2dit.train.data import LatentBatches
    from s2dit.train.methods import FlowMatching

    if not cfg.latents:
        raise S2DitError("--latents: an encoded latent folder is required (s2dit data encode)")
    out = Path(cfg.out)
    checkpoint.refuse_old_format(out, "supernet.pt")
    out.mkdir(parents=True, exist_ok=True)
    data = LatentBatches(cfg.latents, cfg.text_len, cfg.holdout, cfg.seed)
    text_dim = data.clips([0])["text"].shape[-1]
    if text_dim != cfg.text_dim:
        raise S2DitError(f"the latents carry {text_dim}-d text, the supernet expects text_dim {cfg.text_dim}")
    dev = torch.device(device)
    torch.manual_seed(cfg.seed)
    net = Supernet(cfg).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=0.0)
    method = FlowMatching(cfg.timesteps, cfg_dropout=0.0, seed=cfg.seed)
    null = data.null_text()
    step, losses = 0, []
    state = checkpoint.load_latest(out / "checkpoints")
    if state is not None:
        checkpoint.refuse_other_settings(out, state["config"], cfg, resumable=())
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        checkpoint.set_rng_state(state["rng"])
        step, losses = state["step"], state["losses"]

    def save() -> None:
        payload = {"config": to_dict(cfg), "model": net.state_dict(), "optimizer": opt.state_dict()}
        payload |= {"step": step, "losses": losses, "rng": checkpoint.rng_state()}
        checkpoint.save(out / "checkpoints", step, payload, keep=2)

    net.train()
    with tqdm(total=cfg.steps, initial=step, desc="supernet", unit="step", disable=not progress) as bar:
        while step < cfg.steps:
            layout = random_layout(
                cfg.kinds, cfg.depth, torch.Generator().manual_seed(cfg.seed * 100_003 + step)
            )
            batch = data.batch(list(range(step * cfg.batch_size, (step + 1) * cfg.batch_size)))
            loss, _ = method.loss(net.select(layout), batch, null, dev)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.4f}")
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save()
    scores, eval_losses = score_positions(net, cfg, data, method, null, dev, progress)
    report = {
        "schema": QUALITY_SCHEMA,
        "method": "supernet",
        "kinds": cfg.kinds,
        "depth": cfg.depth,
        "scores": scores,
        "losses": eval_losses,
        "made_with": {
            "config": to_dict(cfg),
            "train_loss_last_50": sum(losses[-50:]) / len(losses[-50:]),
            "held_out_clips": cfg.eval_clips,
            "layouts_per_entry": cfg.eval_layouts,
            "score": "mean over kinds of the held-out flow-matching loss minus this kind's (higher: better)",
        },
    }
    write_text_atomic(out / "quality.json", json.dumps(report, indent=1))
    return report


@torch.no_grad()
def score_positions(net: Supernet, cfg, data, method, null, dev, progress: bool = True):
    """Held-out loss of each (position, kind), over shared random layouts, noise and noise levels."""
    from tqdm import tqdm

    net.eval()
    held = data.holdout[: cfg.eval_clips] or list(range(min(cfg.eval_clips, data.train_size)))
    batch = data.clips(held)
    batch["positions"] = [10**9 + i for i in range(len(held))]  # fixed noise, apart from training's
    inputs = {k: v.to(dev) for k, v in method.inputs(batch, null).items()}
    g = torch.Generator().manual_seed(cfg.seed + 12345)
    bases = [random_layout(cfg.kinds, cfg.depth, g) for _ in range(cfg.eval_layouts)]

    def loss_of(layout: str) -> float:
        from s2dit.diffusion.flow import NUM_TRAIN_TIMESTEPS, add_noise, flow_matching_loss

        x = add_noise(inputs["x0"], inputs["noise"], inputs["sigma"])
        v = net.select(layout)(x, inputs["sigma"] * NUM_TRAIN_TIMESTEPS, inputs["text"], inputs["mask"])
        return float(flow_matching_loss(v, inputs["x0"], inputs["noise"]))

    cache: dict[str, float] = {}
    losses = []
    total = cfg.depth * len(cfg.kinds) * len(bases)
    with tqdm(total=total, desc="scoring", unit="layout", disable=not progress) as bar:
        for i in range(cfg.depth):
            row = {}
            for k in cfg.kinds:
                vals = []
                for base in bases:
                    layout = base[:i] + k + base[i + 1 :]
                    if layout not in cache:
                        cache[layout] = loss_of(layout)
                    vals.append(cache[layout])
                    bar.update(1)
                row[k] = sum(vals) / len(vals)
            losses.append(row)
    net.train()
    scores = [{k: sum(row.values()) / len(row) - row[k] for k in row} for row in losses]
    return scores, losses

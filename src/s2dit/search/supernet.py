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
The training is the loop every s2dit training shares (:mod:`s2dit.train.loop`): the run folder keeps
``config.yaml``, ``train_log.jsonl`` and ``checkpoints/step-N.pt`` (every ``checkpoint_every`` steps, the
newest two), so a killed run resumes.
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
from s2dit.train.loop import LoopSettings, TrainingLoop, single_process

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


class SupernetTraining(TrainingLoop):
    """The supernet's training, in the loop every s2dit training shares (:mod:`s2dit.train.loop`): each step
    a random layout (seeded by the step) and a flow-matching step through it, at a constant rate. At the end
    every (position, kind) is scored and ``quality.json`` written."""

    def __init__(self, cfg: SupernetConfig, device: str = "cpu", progress: bool = True):
        if not cfg.latents:
            raise S2DitError("--latents: an encoded latent folder is required (s2dit data encode)")
        self.cfg = cfg
        settings = LoopSettings(
            out=cfg.out,
            config=cfg,
            steps=cfg.steps,
            learning_rate=lambda step: cfg.lr,
            batch_size=cfg.batch_size,
            grad_clip=cfg.grad_clip,
            checkpoint_every=cfg.checkpoint_every,
            old_formats=("supernet.pt",),
            desc="supernet",
        )
        super().__init__(settings, single_process(device), progress)

    def build(self):
        from s2dit.train.data import LatentBatches
        from s2dit.train.methods import FlowMatching

        cfg = self.cfg
        self.data = LatentBatches(cfg.latents, cfg.text_len, cfg.holdout, cfg.seed)
        text_dim = self.data.clips([0])["text"].shape[-1]
        if text_dim != cfg.text_dim:
            raise S2DitError(
                f"the latents carry {text_dim}-d text, the supernet expects text_dim {cfg.text_dim}"
            )
        self.method = FlowMatching(cfg.timesteps, cfg_dropout=0.0, seed=cfg.seed)
        self.null = self.data.null_text()
        self.losses: list[float] = []
        torch.manual_seed(cfg.seed)
        net = Supernet(cfg).to(self.world.device)
        return net, list(net.parameters())

    def loss(self, step: int, micro: int):
        cfg = self.cfg
        layout = random_layout(cfg.kinds, cfg.depth, torch.Generator().manual_seed(cfg.seed * 100_003 + step))
        batch = self.data.batch(list(range(step * cfg.batch_size, (step + 1) * cfg.batch_size)))
        loss, _ = self.method.loss(self.model.select(layout), batch, self.null, self.world.device)
        self.losses.append(loss.item())
        return loss, {}

    def extra_state(self) -> dict:
        return {"losses": self.losses}

    def load_extra_state(self, payload: dict) -> None:
        self.losses = list(payload["losses"])

    def finish(self, row: dict) -> dict:
        """Score every (position, kind) on held-out clips and write ``quality.json``; returns the report."""
        from s2dit.config import to_dict

        cfg = self.cfg
        scores, eval_losses = score_positions(
            self.model, cfg, self.data, self.method, self.null, self.world.device, self.progress
        )
        report = {
            "schema": QUALITY_SCHEMA,
            "method": "supernet",
            "kinds": cfg.kinds,
            "depth": cfg.depth,
            "scores": scores,
            "losses": eval_losses,
            "made_with": {
                "config": to_dict(cfg),
                "train_loss_last_50": sum(self.losses[-50:]) / len(self.losses[-50:]),
                "held_out_clips": cfg.eval_clips,
                "layouts_per_entry": cfg.eval_layouts,
                "score": "mean over kinds of the held-out flow-matching loss minus this kind's "
                "(higher: better)",
            },
        }
        write_text_atomic(self.out / "quality.json", json.dumps(report, indent=1))
        return report


def train_supernet(cfg: SupernetConfig, device: str = "cpu", progress: bool = True) -> dict:
    """Train (or resume) the supernet, score every (position, kind), write ``quality.json``."""
    return SupernetTraining(cfg, device, progress).fit()


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

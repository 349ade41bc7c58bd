"""Training checkpoints: everything a run needs to continue exactly where it stopped.

One file per save, ``checkpoints/step-0000250.pt``, written by rank 0 through a temporary file + fsync +
rename (a crash never leaves a half-written checkpoint under its final name); the newest
``keep`` files are kept. It holds full (unsharded) state dicts keyed by parameter name, so a run may
resume on another number of processes or switch between DDP and FSDP2:

``model``, ``optimizer``, ``step``, ``rng`` (torch, Python and NumPy generators) and the run ``config``;
the denoiser trainer adds ``ema``, ``ema_counters``, ``samples_seen`` (the data position) and its method's
state. (Checkpoints written before the loop was shared also hold a ``scheduler``, now unused: the learning
rate is a function of the step.) Everything in it is a tensor or plain
data, and it loads with ``torch.load(weights_only=True)``: a crafted file cannot run code on resume.

A damaged newest checkpoint (truncated by a full disk, a copy cut short) stops the resume with an error
naming it and the intact previous one; nothing is deleted automatically.

Every s2dit training (the denoiser trainer, the autoencoder and decoder trainers, the supernet) runs in the
one loop of :mod:`s2dit.train.loop`, which checkpoints this way into ``<run folder>/checkpoints/``
(``model``, ``optimizer``, ``step``, ``rng`` and ``config``, and what each training adds) and resumes a
run folder only with the settings it was started with: :func:`refuse_other_settings`. Folders checkpointed
in the formats before that (``checkpoint.pt``, ``supernet.pt``) are refused with how to restart:
:func:`refuse_old_format`.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from s2dit.atomic import atomic_path
from s2dit.config import describe_changes, from_dict
from s2dit.errors import ConfigError, S2DitError
from s2dit.train.distributed import World

PATTERN = re.compile(r"step-(\d{7})\.pt")


def refuse_other_settings(
    out: str | os.PathLike, saved: dict, cfg, resumable: Iterable[str] = ("out",)
) -> None:
    """Refuse to continue the run in ``out``, started with the settings ``saved`` (a config as plain data),
    with a ``cfg`` (a config dataclass of the same type) that differs in more than the ``resumable`` fields.
    The error lists the differences."""
    try:
        old = from_dict(type(cfg), saved)
    except ConfigError as e:
        raise S2DitError(
            f"{out} holds a run whose settings this version cannot read ({e}); use another out folder"
        ) from None
    old = dataclasses.replace(old, **{k: getattr(cfg, k) for k in resumable})
    if old != cfg:
        raise S2DitError(f"{out} holds a run with other settings ({describe_changes(old, cfg)})")


def refuse_old_format(out: str | os.PathLike, name: str) -> None:
    """Refuse a run folder holding ``name``, a checkpoint of the format before ``checkpoints/step-N.pt``."""
    old = Path(out) / name
    if old.is_file():
        raise S2DitError(
            f"{out} holds a run checkpointed in an older format ({name}), which this version does not "
            f"resume: start it again in another out folder, or delete {old} to restart it in this one"
        )


def checkpoint_files(folder: Path) -> list[Path]:
    """Checkpoints in ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if PATTERN.fullmatch(p.name))


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer, world: World) -> tuple[dict, dict]:
    """Unsharded model and optimiser state dicts (every rank must call; rank 0 receives them)."""
    # Imported here: torch.distributed.checkpoint is hundreds of modules the single-process trainings of
    # this module's other users (s2dit train vae, the supernet) never need.
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=world.distributed)
    model_state, optim_state = get_state_dict(model, optimizer, options=options)
    if not world.distributed:
        model_state = {k: v.detach().cpu().clone() for k, v in model_state.items()}
    return model_state, optim_state


def rng_state() -> dict:
    """The global generators' states as tensors, tuples and numbers only (loadable with weights_only)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    numpy = [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": numpy}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def save(folder: Path, step: int, payload: dict, keep: int) -> Path:
    """Write ``payload`` as the checkpoint of ``step`` (rank 0 only) and drop all but the newest ``keep``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:07d}.pt"
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    for old in checkpoint_files(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_latest(folder: Path) -> dict | None:
    """The newest checkpoint's payload, or None when there is none."""
    files = checkpoint_files(folder)
    if not files:
        return None
    try:
        # weights_only: a checkpoint is data (tensors, numbers, strings); one that asks to run code fails.
        return torch.load(files[-1], map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise S2DitError(
            f"checkpoint {files[-1]} holds objects other than tensors and plain data, so it is not loaded "
            f"(it could run code: {str(e).splitlines()[0][:160]}). Checkpoints written before s2dit stored "
            "its random-generator state as tensors cannot be resumed: start the run again in a new folder."
        ) from None
    except Exception as e:  # a truncated zip, a torn pickle: all mean the same to the user
        previous = f"; the previous one, {files[-2]}, is intact" if len(files) > 1 else ""
        why = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}" if str(e) else type(e).__name__
        raise S2DitError(
            f"checkpoint {files[-1]} is damaged ({why}){previous}. "
            "Move the damaged file away to resume from the one before it."
        ) from None


def restore(model: nn.Module, optimizer: torch.optim.Optimizer, payload: dict) -> None:
    """Load model and optimiser state from a checkpoint payload into the (wrapped) model.

    The optimiser state is keyed by parameter name (:func:`full_state`); one keyed by position (a plain
    ``optimizer.state_dict()``, as the autoencoder and supernet trainings wrote before they shared the
    loop) loads as it was saved."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    if any(isinstance(k, int) for k in payload["optimizer"].get("state", {})):
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        return

    optim_state = payload["optimizer"]
    if any("initial_lr" in g for g in optim_state.get("param_groups", [])):
        # Written when a LambdaLR drove the rate (before the shared loop): its entry has no place now.
        groups = [{k: v for k, v in g.items() if k != "initial_lr"} for g in optim_state["param_groups"]]
        optim_state = {**optim_state, "param_groups": groups}
    saved = set(optim_state.get("state", {}))
    set_state_dict(
        model,
        optimizer,
        model_state_dict=payload["model"],
        optim_state_dict=optim_state,
        options=StateDictOptions(full_state_dict=True, strict=not _some_never_stepped(model, saved)),
    )
    # Loading first gives every parameter a state (a zero step); one that had none when saved (a supernet
    # block no layout has used yet) gets none again, so its first update is the one it would have had.
    for name, p in model.named_parameters():
        if _plain_name(name) not in saved:
            optimizer.state.pop(p, None)


def _plain_name(name: str) -> str:
    """A parameter's name without the wrappers' prefixes (DDP's ``module.``), as full state dicts key it."""
    return name.removeprefix("module.")


def _some_never_stepped(model: nn.Module, saved: set) -> bool:
    return any(_plain_name(n) not in saved for n, p in model.named_parameters() if p.requires_grad)

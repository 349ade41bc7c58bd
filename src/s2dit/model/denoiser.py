"""Build, save and load any of our denoisers: an S2DiT (``kind: s2dit``) or a Wan-family teacher
(``kind: wan``). Both are called ``model(x, t [B, T], text, text_mask) -> v``.

A saved denoiser is a folder:

* S2DiT: ``s2dit.yaml`` (its :class:`ModelConfig`) + ``model.safetensors``;
* Wan: the diffusers format (``config.json`` + ``diffusion_pytorch_model.safetensors``), so the real Wan
  weights and our micro teacher load through the same path.

``load_denoiser`` also accepts a training run folder (it loads ``model/`` inside it).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import torch
from torch import nn

from s2dit.config import from_dict, save_config
from s2dit.errors import ConfigError, S2DitError
from s2dit.files import load_safetensors, read_yaml
from s2dit.model.config import ModelConfig, preset
from s2dit.model.transformer import S2DiT
from s2dit.model.wan import (
    WanConfig,
    WanDenoiser,
    WanTwoExperts,
    add_coordinates,
    grow_depth,
    grow_patch_embedding,
    widen_patch_embedding,
)

KINDS = ("s2dit", "wan")


@dataclasses.dataclass
class DenoiserSpec:
    """Which denoiser to build. ``preset`` (s2dit) names a starting architecture that ``s2dit`` fields
    override; ``init`` optionally initialises it from a saved denoiser (Wan or S2DiT) where shapes match."""

    kind: str = "s2dit"
    preset: str = ""
    s2dit: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    wan: WanConfig = dataclasses.field(default_factory=WanConfig)
    init: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"model.kind: {self.kind!r} must be one of {', '.join(KINDS)}")


def build_denoiser(spec: DenoiserSpec) -> nn.Module:
    if spec.kind == "wan":
        if not spec.init:
            return WanDenoiser.from_config(spec.wan)
        # A Wan init keeps its saved architecture; only a wider patch window or more layers in the config
        # grow it, function-preservingly.
        model = load_denoiser(spec.init)
        if not isinstance(model, WanDenoiser):
            return model
        grown = []
        if grow_patch_embedding(model.transformer, spec.wan.patch_kernel, spec.wan.patch_frames):
            grown.append(
                "patch window grown to " + "x".join(map(str, model.transformer.patch_embedding.kernel_size))
            )
        if spec.wan.coordinates and add_coordinates(model.transformer):
            grown.append("coordinate planes added")
        added = grow_depth(model.transformer, spec.wan.layers)
        if added:
            grown.append(f"{added} zero-output blocks appended ({len(model.transformer.blocks)} layers)")
        if grown and int(os.environ.get("RANK", "0")) == 0:
            print(f"initialised from {spec.init}: {'; '.join(grown)}", file=sys.stderr)
        return model
    model = S2DiT(spec.s2dit)
    if spec.init:
        from s2dit.model.init import init_from_full_attention

        source = load_denoiser(spec.init)
        wan = isinstance(source, WanDenoiser | WanTwoExperts)  # two experts: the high-noise one
        heads = source.transformer.config.num_attention_heads if wan else None
        state = source.transformer.state_dict() if wan else source.state_dict()
        report = init_from_full_attention(model, state, wan_heads=heads)
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"initialised from {spec.init}: {report.format()}", file=sys.stderr)
    return model


def resolve_spec(spec: DenoiserSpec) -> DenoiserSpec:
    """Apply a preset: the preset's architecture, with any fields the spec changes from the defaults."""
    if spec.kind != "s2dit" or not spec.preset:
        return spec
    base, default = preset(spec.preset), ModelConfig()
    changed = {
        f.name: getattr(spec.s2dit, f.name)
        for f in dataclasses.fields(ModelConfig)
        if getattr(spec.s2dit, f.name) != getattr(default, f.name)
    }
    return dataclasses.replace(spec, s2dit=dataclasses.replace(base, **changed))


def same_architecture(model: nn.Module) -> nn.Module:
    """A new, plain (unwrapped, unsharded) denoiser with ``model``'s architecture, on the CPU."""
    if isinstance(model, WanDenoiser):
        transformer = type(model.transformer).from_config(model.transformer.config)
        frames, _, kernel = model.transformer.patch_embedding.kernel_size
        widen_patch_embedding(transformer, kernel, frames)
        return WanDenoiser(transformer)
    return S2DiT(model.config)


def save_denoiser(model: nn.Module, folder: str | os.PathLike, state_dict: dict | None = None) -> None:
    """Write ``model`` (or ``state_dict`` in its architecture, e.g. EMA weights) to ``folder``."""
    from safetensors.torch import save_file

    from s2dit.atomic import atomic_path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(model, WanDenoiser):
        if state_dict is not None:
            clone = same_architecture(model)
            clone.load_state_dict(state_dict)
            model = clone
        model.save(folder)
        return
    state = state_dict if state_dict is not None else model.state_dict()
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file({k: v.detach().contiguous() for k, v in state.items()}, str(tmp))
    save_config(model.config, folder / "s2dit.yaml")


def load_denoiser(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """A saved denoiser folder (S2DiT or diffusers Wan), or a training run folder holding ``model/``."""
    path = Path(path)
    if not path.exists():
        raise S2DitError(f"{path} does not exist")
    if (path / "model").is_dir() and not (path / "s2dit.yaml").is_file():
        path = path / "model"
    if (path / "s2dit.yaml").is_file():
        if not (path / "model.safetensors").is_file():
            raise S2DitError(f"{path} has s2dit.yaml but no model.safetensors")
        model = S2DiT(from_dict(ModelConfig, read_yaml(path / "s2dit.yaml")))
        load_weights(model, load_safetensors(path / "model.safetensors"), path / "model.safetensors")
        return model.to(device).eval()
    if (path / "transformer_2" / "config.json").is_file():
        return WanTwoExperts.from_folder(path).to(device).eval()
    if (path / "config.json").is_file() or (path / "transformer" / "config.json").is_file():
        return WanDenoiser.from_folder(path).to(device).eval()
    raise S2DitError(
        f"{path}: not a denoiser folder (expected s2dit.yaml + model.safetensors, a diffusers "
        "WanTransformer3DModel folder, a Wan pipeline folder with transformer/ (and transformer_2/ for "
        "Wan2.2's two experts), or a training run with model/)"
    )


def load_weights(model: nn.Module, state: dict, source: str | os.PathLike) -> None:
    """``model.load_state_dict(state)`` strictly; weights of another architecture are one error naming
    ``source`` and the first mismatches."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:300]
        raise S2DitError(f"{source}: the weights do not fit the model's config ({detail})") from None


def text_dim(model: nn.Module) -> int:
    return model.text_dim if isinstance(model, WanDenoiser | WanTwoExperts) else model.config.text_dim

"""The Wan teacher family behind our denoiser signature: diffusers' ``WanTransformer3DModel``.

``WanDenoiser(x [B, C, T, H, W], t [B, T], text [B, L, D], text_mask [B, L]) -> v``, the same call as
:class:`~s2dit.model.transformer.S2DiT`. One adapter serves the real Wan2.1/2.2 weights (a local diffusers
folder) and our micro teacher (a small config of the same class, saved in the same format).

Wan has no text mask: prompts are zero-padded (its convention), so masked tokens are zeroed here.
Per-frame timesteps go in through diffusers' per-token path (Wan2.2 TI2V); a clip at one noise level
uses the cheaper per-clip path.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from s2dit.errors import ConfigError, S2DitError
from s2dit.files import load_safetensors, read_json
from s2dit.model.layers import RMSNorm


@dataclasses.dataclass
class WanConfig:
    """A ``WanTransformer3DModel`` architecture (Wan2.1-1.3B: layers 30, heads 12, head_dim 128,
    ffn_dim 8960, text_dim 4096). ``zero_init`` starts a model trained from scratch with the output
    projection of every residual branch (self-attention, cross-attention, FFN) and of the final layer at
    zero, so each block begins as the identity and the velocity as zero (DiT's adaLN-Zero idea; diffusers'
    own initialisation draws them at random). It changes the starting weights only, not the architecture.
    ``coordinates`` gives the patch embedding two more input channels holding each latent pixel's place
    in the frame (:func:`add_coordinates`)."""

    layers: int = 8
    heads: int = 4
    head_dim: int = 64
    ffn_dim: int = 1024
    text_dim: int = 384
    in_channels: int = 16
    freq_dim: int = 256
    zero_init: bool = False
    patch_kernel: int = 2
    patch_frames: int = 1
    coordinates: bool = False

    def __post_init__(self) -> None:
        for name in ("layers", "heads", "head_dim", "ffn_dim", "text_dim", "in_channels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"wan.{name}: must be at least 1")
        if self.patch_kernel < 2 or self.patch_kernel % 2:
            raise ConfigError(f"wan.patch_kernel: {self.patch_kernel} must be even and >= 2 (2 is Wan's)")
        if self.patch_frames < 1 or self.patch_frames % 2 == 0:
            raise ConfigError(f"wan.patch_frames: {self.patch_frames} must be odd and >= 1 (1 is Wan's)")
        if self.head_dim % 2 or self.head_dim < 6:
            raise ConfigError(f"wan.head_dim: {self.head_dim} must be even and >= 6 (3D RoPE)")

    @property
    def width(self) -> int:
        return self.heads * self.head_dim


def zero_init_layers(transformer: nn.Module) -> list[nn.Linear]:
    """The layers ``WanConfig.zero_init`` zeroes: each block's self- and cross-attention output
    projections and FFN output, and the final projection to the latent patches."""
    layers = []
    for block in transformer.blocks:
        layers += [block.attn1.to_out[0], block.attn2.to_out[0], block.ffn.net[-1]]
    return [*layers, transformer.proj_out]


COORDINATE_CHANNELS = 2  # a model whose in_channels exceed its out_channels by this many reads them


def coordinate_planes(x: torch.Tensor) -> torch.Tensor:
    """``[B, 2, T, H, W]``: each latent pixel's row and column, each spread over [-1, 1] (CoordConv)."""
    B, _, T, H, W = x.shape
    rows = torch.linspace(-1.0, 1.0, H, device=x.device, dtype=x.dtype)
    cols = torch.linspace(-1.0, 1.0, W, device=x.device, dtype=x.dtype)
    planes = torch.stack(torch.broadcast_tensors(rows[:, None], cols[None, :]))  # [2, H, W]
    return planes[None, :, None].expand(B, 2, T, H, W)


def add_coordinates(transformer: nn.Module) -> bool:
    """Give the patch embedding the coordinate planes as two more input channels, without changing what it
    computes (their taps start at zero; ``model.init`` of a teacher with ``coordinates``). Wan's 3D RoPE
    only tells a token how far it is from another, so from pure noise a Wan model cannot put an object
    at a place in the frame (the micro world's objects moving right start on the left) except through the
    border's padding; the planes tell each token where it is. The saved config's ``in_channels`` is
    ``out_channels + 2``, which is how a folder says it has them (no released Wan model does). Returns
    whether the planes were added (False when the model has them)."""
    if has_coordinates(transformer):
        return False
    old = transformer.patch_embedding
    new = nn.Conv3d(
        old.in_channels + COORDINATE_CHANNELS,
        old.out_channels,
        old.kernel_size,
        stride=old.stride,
        padding=old.padding,
    )
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels] = old.weight
        new.bias.copy_(old.bias)
    transformer.patch_embedding = new.to(old.weight.dtype)
    transformer.register_to_config(in_channels=new.in_channels)
    return True


def has_coordinates(transformer: nn.Module) -> bool:
    cfg = transformer.config
    return cfg.in_channels == cfg.out_channels + COORDINATE_CHANNELS


def _check_window(kernel: int, frames: int) -> None:
    if kernel < 2 or kernel % 2:
        raise S2DitError(f"a patch embedding window of {kernel}: must be even and >= 2")
    if frames < 1 or frames % 2 == 0:
        raise S2DitError(f"a patch embedding window of {frames} frames: must be odd and >= 1")


def _window_conv(old: nn.Conv3d, kernel: int, frames: int) -> nn.Conv3d:
    """A Conv3d with ``old``'s channels at Wan's stride (1, 2, 2), padded so the token grid stays."""
    pad = (kernel - 2) // 2
    return nn.Conv3d(
        old.in_channels,
        old.out_channels,
        (frames, kernel, kernel),
        stride=(1, 2, 2),
        padding=((frames - 1) // 2, pad, pad),
    )


def widen_patch_embedding(transformer: nn.Module, kernel: int, frames: int = 1) -> None:
    """Give the patch embedding a ``frames × kernel × kernel`` window at Wan's stride of (1, 2, 2)
    (padding ``(frames - 1) / 2`` in time and ``(kernel - 2) / 2`` in space, so the token grid is
    unchanged), freshly initialised; ``(1, 2)`` is Wan's own, non-overlapping patches. A wider spatial
    window lets each token see its neighbours' latents, the local filter a small teacher needs to find an
    object's extent in noisy latents; a temporal window lets it see the same place in the neighbouring
    latent frames, where motion shows (docs/architecture.md §7). The window is read back from the
    weights' shape when a folder loads."""
    old = transformer.patch_embedding
    if old.kernel_size == (frames, kernel, kernel):
        return
    _check_window(kernel, frames)
    if old.kernel_size != (1, 2, 2) or old.stride != (1, 2, 2):
        raise S2DitError(f"a wider patch embedding needs Wan's (1, 2, 2) patches, not {old.kernel_size}")
    transformer.patch_embedding = _window_conv(old, kernel, frames)


def grow_patch_embedding(transformer: nn.Module, kernel: int, frames: int) -> bool:
    """Widen a trained patch embedding to at least ``frames × kernel × kernel`` without changing what it
    computes: the trained window sits at the centre of the new one and every new tap starts at zero, so
    training goes on from the same function (``model.init`` of a teacher with a wider window). A window
    that is already as wide is kept. Returns whether the embedding grew."""
    old = transformer.patch_embedding
    t0, k0 = old.kernel_size[0], old.kernel_size[-1]
    frames, kernel = max(frames, t0), max(kernel, k0)
    if (frames, kernel) == (t0, k0):
        return False
    _check_window(kernel, frames)
    new = _window_conv(old, kernel, frames)
    dt, dk = (frames - t0) // 2, (kernel - k0) // 2
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :, dt : dt + t0, dk : dk + k0, dk : dk + k0] = old.weight
        new.bias.copy_(old.bias)
    transformer.patch_embedding = new.to(old.weight.dtype)
    return True


def grow_depth(transformer: nn.Module, layers: int) -> int:
    """Deepen a trained transformer to at least ``layers`` blocks without changing what it computes: the
    new blocks go after the trained ones, freshly initialised except their residual outputs (self- and
    cross-attention output projections and FFN output), which start at zero, so each new block begins as
    the identity (``model.init`` of a deeper teacher). A model already as deep is kept. Returns the number
    of blocks added."""
    added = layers - len(transformer.blocks)
    if added <= 0:
        return 0
    fresh = type(transformer).from_config({**transformer.config, "num_layers": added})
    new_blocks = RMSNorm.adopt(fresh.blocks)
    with torch.no_grad():
        for block in new_blocks:
            for layer in (block.attn1.to_out[0], block.attn2.to_out[0], block.ffn.net[-1]):
                layer.weight.zero_()
                layer.bias.zero_()
    transformer.blocks.extend(new_blocks.to(transformer.proj_out.weight.dtype))
    transformer.register_to_config(num_layers=len(transformer.blocks))
    return added


class WanDenoiser(nn.Module):
    """See the module docstring."""

    def __init__(self, transformer: nn.Module):
        super().__init__()
        self.transformer = RMSNorm.adopt(transformer)  # Wan's QK-norms stay fused under bf16 autocast

    @classmethod
    def from_config(cls, config: WanConfig) -> WanDenoiser:
        from diffusers import WanTransformer3DModel

        transformer = WanTransformer3DModel(
            num_attention_heads=config.heads,
            attention_head_dim=config.head_dim,
            in_channels=config.in_channels + (COORDINATE_CHANNELS if config.coordinates else 0),
            out_channels=config.in_channels,
            text_dim=config.text_dim,
            freq_dim=config.freq_dim,
            ffn_dim=config.ffn_dim,
            num_layers=config.layers,
        )
        widen_patch_embedding(transformer, config.patch_kernel, config.patch_frames)
        if config.zero_init:
            with torch.no_grad():
                for layer in zero_init_layers(transformer):
                    layer.weight.zero_()
                    layer.bias.zero_()
        return cls(transformer)

    @classmethod
    def from_folder(cls, path: str | os.PathLike, dtype: torch.dtype | None = None) -> WanDenoiser:
        """A diffusers folder: the transformer's own (``config.json`` + weights) or a pipeline's
        (``transformer/``)."""
        from diffusers import WanTransformer3DModel

        path = Path(path)
        if (path / "transformer" / "config.json").is_file():
            path = path / "transformer"
        if not (path / "config.json").is_file():
            raise S2DitError(
                f"{path}: expected a diffusers WanTransformer3DModel folder (config.json and "
                "diffusion_pytorch_model*.safetensors), or a Wan pipeline folder with transformer/"
            )
        # Built from its config and filled from the safetensors files directly (diffusers' from_pretrained
        # wants accelerate for this class); sharded checkpoints (the real 1.3B/14B) come with an index.
        config = read_json(path / "config.json")
        try:
            model = WanTransformer3DModel.from_config(config)
        except (TypeError, ValueError) as e:
            raise S2DitError(f"{path / 'config.json'}: not a WanTransformer3DModel config ({e})") from None
        index = path / "diffusion_pytorch_model.safetensors.index.json"
        if index.is_file():
            weight_map = read_json(index).get("weight_map")
            if not isinstance(weight_map, dict):
                raise S2DitError(f"{index}: no weight_map object")
            files = sorted(set(map(str, weight_map.values())))
        else:
            files = ["diffusion_pytorch_model.safetensors"]
        missing = [f for f in files if not (path / f).is_file()]
        if missing:
            raise S2DitError(f"{path} is missing {', '.join(missing)} (the transformer's weights)")
        state = {}
        for f in files:
            state.update(load_safetensors(path / f))
        kernel = state.get("patch_embedding.weight")
        if kernel is not None and kernel.ndim == 5:
            widen_patch_embedding(model, kernel.shape[-1], kernel.shape[2])
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            detail = " ".join(str(e).split())[:300]
            raise S2DitError(f"{path}: the weights do not fit config.json ({detail})") from None
        return cls(model if dtype is None else model.to(dtype))

    def save(self, folder: str | os.PathLike) -> None:
        """Write the diffusers folder to a temporary sibling and swap it into place (``save_pretrained``
        writes its files one by one, so a kill mid-way would leave a torn folder). Files of ours that
        live beside the weights (``pipeline.yaml``) are carried over; old weight files are not."""
        from s2dit.atomic import atomic_folder

        folder = Path(folder)
        with atomic_folder(folder) as tmp:
            self.transformer.save_pretrained(tmp, safe_serialization=True)
            if folder.is_dir():
                for old in folder.iterdir():
                    written = (tmp / old.name).exists() or old.name.startswith(
                        ("diffusion_pytorch_model", ".tmp-")
                    )
                    if old.is_file() and not written:
                        shutil.copy2(old, tmp / old.name)

    @property
    def text_dim(self) -> int:
        return self.transformer.config.text_dim

    def enable_activation_checkpointing(self) -> None:
        self.transformer.enable_gradient_checkpointing()

    def fsdp_units(self) -> list[nn.Module]:
        """FSDP2 shards each transformer block on its own, then the rest."""
        return list(self.transformer.blocks)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor | None = None,
        chunk_frames: int | None = None,
    ) -> torch.Tensor:
        """Velocity ``[B, C, T, H, W]``; ``t [B, T]`` in 0..1000 (one level per latent frame)."""
        if chunk_frames is not None:
            raise ValueError("the Wan teacher is bidirectional: chunk_frames must be None")
        if text_mask is not None:
            text = text * text_mask[..., None].to(text.dtype)
        H, W = x.shape[3:]
        if has_coordinates(self.transformer):
            x = torch.cat([x, coordinate_planes(x)], dim=1)
        # One timestep per clip when all frames share it; else one per token (frame-major, like the patches).
        same = bool((t == t[:, :1]).all())
        timestep = t[:, 0] if same else t.repeat_interleave((H // 2) * (W // 2), dim=1)
        return self.transformer(x, timestep, text, return_dict=False)[0]


class WanTwoExperts(nn.Module):
    """Wan2.2 A14B's mixture of two experts behind the same call as :class:`WanDenoiser`.

    ``high`` (the pipeline's ``transformer/``) denoises timesteps ``t >= boundary`` and ``low``
    (``transformer_2/``) those below; ``boundary = boundary_ratio · 1000`` with ``boundary_ratio`` from the
    pipeline's ``model_index.json`` (0.875 for Wan2.2-T2V-A14B). Frames of one clip at levels on both sides
    of the boundary (per-frame timesteps) get each frame from its own expert.
    """

    def __init__(self, high: WanDenoiser, low: WanDenoiser, boundary: float):
        super().__init__()
        if not 0 < boundary < 1000:
            raise ConfigError(f"the expert boundary {boundary} must lie inside (0, 1000)")
        self.high, self.low, self.boundary = high, low, boundary
        if high.text_dim != low.text_dim:
            raise ConfigError(f"the experts read {high.text_dim}-d and {low.text_dim}-d text")

    @classmethod
    def from_folder(cls, path: str | os.PathLike, dtype: torch.dtype | None = None) -> WanTwoExperts:
        """A diffusers Wan2.2 pipeline folder: ``transformer/``, ``transformer_2/``, ``model_index.json``."""
        path = Path(path)
        index = path / "model_index.json"
        ratio = read_json(index).get("boundary_ratio") if index.is_file() else None
        if not isinstance(ratio, int | float) or isinstance(ratio, bool):
            raise S2DitError(
                f"{path} has transformer_2/ but no numeric boundary_ratio in model_index.json: "
                "a two-expert Wan2.2 pipeline needs it"
            )
        high = WanDenoiser.from_folder(path / "transformer", dtype)
        low = WanDenoiser.from_folder(path / "transformer_2", dtype)
        return cls(high, low, float(ratio) * 1000.0)

    @property
    def text_dim(self) -> int:
        return self.high.text_dim

    @property
    def transformer(self) -> nn.Module:
        """The high-noise expert (what initialises a student: the structure starts from noise)."""
        return self.high.transformer

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor | None = None,
        chunk_frames: int | None = None,
    ) -> torch.Tensor:
        """Velocity ``[B, C, T, H, W]`` from the expert of each frame's timestep ``t [B, T]``."""
        high = t >= self.boundary
        if bool(high.all()):
            return self.high(x, t, text, text_mask, chunk_frames)
        if not bool(high.any()):
            return self.low(x, t, text, text_mask, chunk_frames)
        v_high = self.high(x, t, text, text_mask, chunk_frames)
        v_low = self.low(x, t, text, text_mask, chunk_frames)
        return torch.where(high[:, None, :, None, None], v_high, v_low)

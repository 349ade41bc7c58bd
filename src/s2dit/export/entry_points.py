"""The exported entry points of a streaming model, each a static-shape ``nn.Module`` over plain tensors.

A phone app runs a stream with four graphs:

* ``prompt``:  ``(text [1, L, D], text_mask [1, L] float) -> (block0.text_k, block0.text_v, ..., text_mask)``,
  once per prompt (text encoding itself stays outside: embeddings are inputs);
* ``denoise``: ``(x [1, C, c, H, W], t [1, c], *prompt, *cache) -> x0 [1, C, c, H, W]``, every step; the cache
  is only read;
* ``commit``:  ``(x, t, *prompt, *cache) -> new cache``, once per chunk, on the finished chunk;
* ``decoder``: ``(latents [1, C, c, H, W], tail) -> (frames [1, 3, 4c, 8H, 8W], new tail)``; the first
  chunk of a video keeps only its last ``4c - 3`` frames.

The *cache* is the stream state without the prompt (``count``, then per block its K/V slots, or its linear
sums and conv tail): tensors of fixed shapes for every chunk, the first included (slots not yet written are
masked by ``count``), so one static graph serves the whole stream. Names, shapes and dtypes go into the
manifest (:mod:`s2dit.export.manifest`).
"""

from __future__ import annotations

import torch
from torch import nn

from s2dit.diffusion.flow import NUM_TRAIN_TIMESTEPS, x0_from_velocity
from s2dit.model.state import StreamSpec, StreamState, split_names
from s2dit.model.transformer import ExplicitStateStep, S2DiT


class DenoiseStep(ExplicitStateStep):
    """``(x, t, *prompt, *cache) -> x0``: one denoising step's clean-latent prediction (state read only)."""

    def __init__(self, model: S2DiT, template: StreamState):
        super().__init__(model, template, commit=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor, *tensors: torch.Tensor) -> torch.Tensor:
        v = super().forward(x, t, *tensors)[0]
        return x0_from_velocity(x, v, t / NUM_TRAIN_TIMESTEPS)


class CommitStep(ExplicitStateStep):
    """``(x, t, *prompt, *cache) -> new cache``: write the finished chunk into the stream."""

    def __init__(self, model: S2DiT, template: StreamState):
        super().__init__(model, template, commit=True)

    def forward(self, x: torch.Tensor, t: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return super().forward(x, t, *tensors)[1:]


class PromptStep(nn.Module):
    """``(text, text_mask) -> (*text K/V per block, text_mask)``: a prompt's cross-attention K/V."""

    def __init__(self, model: S2DiT):
        super().__init__()
        self.model = model

    def forward(self, text: torch.Tensor, text_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = []
        for k, v in self.model.text_kv(text):
            out += [k.contiguous(), v.contiguous()]
        return (*out, text_mask)


class DecoderStep(nn.Module):
    """``(latents, tail) -> (frames, new tail)``: the tiny autoencoder's streaming decoder, one chunk."""

    def __init__(self, ae):
        super().__init__()
        self.ae = ae

    def forward(self, latents: torch.Tensor, tail: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ae.decode_frames(latents, tail, first=False)


class StreamGraphs:
    """The four entry points of ``model`` (and ``ae``) for latent chunks of ``size = (H, W)``, with example
    inputs. ``conv_2d``: compute the 3D convolutions as 2D ones (for ExecuTorch's XNNPACK)."""

    def __init__(
        self, model: S2DiT, ae, size: tuple[int, int], spec: StreamSpec, text_len: int, conv_2d=False
    ):
        from s2dit.ops.causal_conv import causal_depthwise_conv3d_2d

        self.model, self.ae, self.size, self.spec, self.text_len = model.eval(), ae, size, spec, text_len
        if conv_2d:  # instance attributes: the classes keep their default operator
            for block in model.blocks:
                if block.kind == "L":
                    block.mixer.conv_op = causal_depthwise_conv3d_2d
            if ae is not None:
                ae.conv_op = causal_depthwise_conv3d_2d
        cfg = model.config
        with torch.no_grad():
            self.template = model.init_state(torch.zeros(1, text_len, cfg.text_dim), *size, spec)
        self.prompt_names, self.cache_names = split_names(self.template)
        self.modules = {
            "prompt": PromptStep(model),
            "denoise": DenoiseStep(model, self.template),
            "commit": CommitStep(model, self.template),
        }
        if ae is not None:
            self.modules["decoder"] = DecoderStep(ae.eval())

    def initial_cache(self) -> list[torch.Tensor]:
        tensors = self.template.tensors()
        return [tensors[n].detach().contiguous().clone() for n in self.cache_names]

    def example_inputs(self, name: str) -> tuple[torch.Tensor, ...]:
        cfg, (H, W), c = self.model.config, self.size, self.spec.chunk_frames
        g = torch.Generator().manual_seed(0)
        text = torch.randn(1, self.text_len, cfg.text_dim, generator=g) * 0.1
        mask = torch.ones(1, self.text_len)
        if name == "prompt":
            return text, mask
        x, t = torch.randn(1, cfg.in_channels, c, H, W, generator=g), torch.full((1, c), 500.0)
        if name == "decoder":
            kt = self.ae.temporal.weight.shape[2]
            return x, torch.zeros(1, cfg.in_channels, kt - 1, H, W)
        with torch.no_grad():
            prompt = self.modules["prompt"](text, mask)
        return (x, t, *prompt, *self.initial_cache())

    def names(self, name: str) -> tuple[list[str], list[str]]:
        """``(input names, output names)`` of an entry point."""
        state = [*self.prompt_names, *self.cache_names]
        return {
            "prompt": (["text", "text_mask_in"], self.prompt_names),
            "denoise": (["x", "t", *state], ["x0"]),
            "commit": (["x", "t", *state], [f"new.{n}" for n in self.cache_names]),
            "decoder": (["latents", "tail"], ["frames", "new_tail"]),
        }[name]

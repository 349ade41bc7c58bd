"""The S2DiT transformer: any layout of L / S / F blocks, three attention modes (docs/architecture.md §3).

* ``forward(x, t, text, chunk_frames=None)``: bidirectional over the clip (S2DiT-KD, teacher, critic);
* ``forward(x, t, text, chunk_frames=c)``: block-causal over chunks of ``c`` latent frames (training
  of S2DiT-AR);
* ``forward_chunk(x, t, state, commit)``: one chunk against a :class:`StreamState`. Run chunk by
  chunk (each chunk committed with the inputs the block-causal run saw), it equals the block-causal run:
  the parity law, held by tests.

Shapes: latents ``[B, C, T, H, W]``, timesteps ``[B, T]`` (one per latent frame), text ``[B, L, text_dim]``
with an optional ``text_mask [B, L]`` (True: a real token). The network predicts the flow-matching
velocity ``v = ε - x0`` and never sees the noise schedule.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from s2dit.model.attention import block_causal_mask
from s2dit.model.blocks import Block
from s2dit.model.config import ModelConfig
from s2dit.model.embeddings import PatchEmbed, TextEmbedding, TimestepEmbedding, modulate, unpatchify
from s2dit.model.rope import RoPE3D
from s2dit.model.ssa import StageDown, StageUp, coarse_grid, run_stages, stages
from s2dit.model.state import (
    ChunkContext,
    KVCache,
    LinearCache,
    StreamSpec,
    StreamState,
    cache_layout,
    chunk_frame_times,
    split_names,
)
from s2dit.ops.linear_attention import LinearAttentionState


def _bool_mask(text_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Text masks may come as bool, or 0/1 ints/floats (a tokenizer's attention_mask): True = real token."""
    return None if text_mask is None else text_mask.bool()


class S2DiT(nn.Module):
    """The streaming sandwich diffusion transformer; see the module docstring."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        D = config.width
        self.patch = PatchEmbed(config.in_channels, D)
        self.time = TimestepEmbedding(D, config.freq_dim)
        self.text = TextEmbedding(config.text_dim, D)
        self.rope = RoPE3D(config.head_dim, config.rope_theta)
        self.blocks = nn.ModuleList(
            Block(kind, D, config.heads, config.ffn_dim, config.conv_kernel) for kind in config.layout
        )
        self.stages = stages(config.layout)
        self.stage_down = nn.ModuleList(StageDown(D) for _ in self.stages)
        self.stage_up = nn.ModuleList(StageUp(D) for _ in self.stages)
        self.norm_out = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.out_modulation = nn.Parameter(torch.zeros(1, 1, 2, D))
        self.proj_out = nn.Linear(D, config.in_channels * 4)
        self.activation_checkpointing = False
        self.initialize_weights()

    def enable_activation_checkpointing(self) -> None:
        """Recompute each block's activations in the backward pass (training memory for compute)."""
        self.activation_checkpointing = True

    def fsdp_units(self) -> list[nn.Module]:
        """Sub-modules FSDP2 may shard on their own. None: the per-block text K/V (cross-attention
        weights) are computed once per prompt outside the blocks' forward, so the model is one unit."""
        return []

    def initialize_weights(self) -> None:
        """Xavier-uniform linear layers with zero biases; then adaLN-Zero (DiT): the time projection
        that makes the modulation vectors and the output projection start at zero, so every block
        starts as the identity and the model predicts v = 0."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.time.to_modulation[-1].weight)
        nn.init.zeros_(self.time.to_modulation[-1].bias)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    # -------------------------------------------------------------------------------------------
    # The block loop, shared by every mode
    # -------------------------------------------------------------------------------------------

    def _run_blocks(self, x, modulation, text_kv, text_mask, grid, mixer):
        """``mixer(i, block, h, grid)`` applies block i's token mixer in the current mode; the stages of S
        blocks are entered and left by :func:`s2dit.model.ssa.run_stages`."""

        def run_block(i, block, x, g):
            mix = lambda h: mixer(i, block, h, g)  # noqa: E731
            if self.activation_checkpointing and torch.is_grad_enabled():
                return checkpoint(block, x, modulation, text_kv[i], text_mask, mix, use_reentrant=False)
            return block(x, modulation, text_kv[i], text_mask, mix)

        return run_stages(self.blocks, self.stages, self.stage_down, self.stage_up, x, grid, run_block)

    def _head(self, x, temb, grid) -> torch.Tensor:
        shift, scale = (self.out_modulation + temb[:, :, None]).unbind(2)  # (B, T, D)
        tokens = self.proj_out(modulate(self.norm_out(x), shift, scale))  # (B, N, C*4)
        return unpatchify(tokens, *grid)

    def text_kv(self, text: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-block text K/V for cross-attention, computed once per prompt. ``text [B, L, text_dim]``."""
        context = self.text(text)
        return [block.cross.text_kv(context) for block in self.blocks]

    # -------------------------------------------------------------------------------------------
    # Modes 1 and 2: the whole clip
    # -------------------------------------------------------------------------------------------

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor | None = None,
        chunk_frames: int | None = None,
    ) -> torch.Tensor:
        """Velocity for a whole clip: ``x [B, C, T, H, W]``, ``t [B, T]`` -> ``[B, C, T, H, W]``.

        ``chunk_frames`` None: bidirectional; otherwise block-causal over chunks of that many latent
        frames (T must be a multiple).
        """
        T, H, W = x.shape[2:]
        if chunk_frames is not None and T % chunk_frames:
            raise ValueError(f"{T} latent frames do not split into chunks of {chunk_frames}")
        grid = (T, H // 2, W // 2)
        tables = {g: self.rope(*g) for g in (grid, coarse_grid(grid))}
        masks = {
            g: None if chunk_frames is None else block_causal_mask(T, g[1] * g[2], chunk_frames, x.device)
            for g in tables
        }

        def mixer(i, block, h, g):
            if block.kind == "L":
                return block.mixer(h, tables[g], g, chunk_frames)
            return block.mixer(h, tables[g], masks[g])

        temb, modulation = self.time(t)  # (B, T, D), (B, T, 6, D)
        x = self.patch(x)  # (B, N, D)
        x = self._run_blocks(x, modulation, self.text_kv(text), _bool_mask(text_mask), grid, mixer)
        return self._head(x, temb, grid)

    # -------------------------------------------------------------------------------------------
    # Mode 3: one chunk at a time against a StreamState
    # -------------------------------------------------------------------------------------------

    def init_state(
        self,
        text: torch.Tensor,
        height: int,
        width: int,
        spec: StreamSpec | None = None,
        text_mask: torch.Tensor | None = None,
        dtype: torch.dtype | None = None,
    ) -> StreamState:
        """An empty stream for latent chunks of ``height × width`` (latent pixels, H then W as in
        ``[B, C, c, H, W]``) and the prompt ``text [B, L, text_dim]``. ``dtype``: of the K/V caches and
        conv tails (default: the weights'; bfloat16 halves a bf16 run's state); linear sums stay float32."""
        spec = spec or StreamSpec()
        B, D, heads = text.shape[0], self.config.width, self.config.heads
        weight = self.proj_out.weight
        like = weight.new_empty(0, dtype=dtype or weight.dtype)
        full = (spec.chunk_frames, height // 2, width // 2)
        caches: list[KVCache | LinearCache] = []
        for block in self.blocks:
            if block.kind == "L":
                sums = LinearAttentionState.zeros(
                    B, heads, self.config.head_dim, self.config.head_dim, like.device
                )
                tail = like.new_zeros(B, D, block.mixer.conv_tail_frames, full[1], full[2])
                caches.append(LinearCache(sums, tail))
            else:
                g = coarse_grid(full) if block.kind == "S" else full
                caches.append(KVCache.empty(B, heads, self.config.head_dim, g[0] * g[1] * g[2], spec, like))
        count = torch.zeros((), dtype=torch.long, device=like.device)
        return StreamState(spec, (height, width), count, caches, self.text_kv(text), _bool_mask(text_mask))

    def set_prompt(
        self, state: StreamState, text: torch.Tensor, text_mask: torch.Tensor | None = None
    ) -> None:
        """Switch the prompt of a stream at a chunk boundary: new text K/V, the rest of the state kept."""
        state.text_kv = self.text_kv(text)
        state.text_mask = _bool_mask(text_mask)

    def _chunk_context(self, state: StreamState, grid, commit: bool) -> ChunkContext:
        spec = state.spec
        c, h, w = grid
        valid, slot_pos, current = cache_layout(state.count, spec)
        return ChunkContext(
            grid=grid,
            rope=self.rope.tables(chunk_frame_times(current, c), h, w),
            linear_rope=self.rope.tables(chunk_frame_times(state.count.float(), c), h, w),
            cache_rope=self.rope.tables(chunk_frame_times(slot_pos, c), h, w),
            cache_valid=valid.repeat_interleave(c * h * w),
            count=state.count,
            spec=spec,
            commit=commit,
        )

    def forward_chunk(
        self, x: torch.Tensor, t: torch.Tensor, state: StreamState, commit: bool = False
    ) -> torch.Tensor:
        """Velocity for the next chunk ``x [B, C, c, H, W]`` at timesteps ``t [B, c]``.

        A denoising pass (``commit=False``) reads the state and leaves it unchanged; a commit pass (on the
        finished chunk, e.g. at t = 0) also writes the chunk into the state and advances ``state.count``.
        """
        c, H, W = x.shape[2:]
        if c != state.spec.chunk_frames:
            raise ValueError(f"chunk has {c} latent frames, the stream expects {state.spec.chunk_frames}")
        if state.size != (H, W):
            raise ValueError(f"chunk is {H}x{W} latent pixels (HxW), the stream was made for {state.size}")
        grid = (c, H // 2, W // 2)
        contexts = {g: self._chunk_context(state, g, commit) for g in (grid, coarse_grid(grid))}

        def mixer(i, block, h, g):
            return block.mixer.forward_chunk(h, contexts[g], state.caches[i])

        temb, modulation = self.time(t)
        out = self._run_blocks(self.patch(x), modulation, state.text_kv, state.text_mask, grid, mixer)
        if commit:
            state.count += 1
        return self._head(out, temb, grid)


class ExplicitStateStep(nn.Module):
    """``forward_chunk`` with the stream state as explicit tensors, for ``torch.export`` and runtimes:
    ``(x [B, C, c, H, W], t [B, c], *prompt, *cache) -> (v, *new cache)``.

    ``prompt`` and ``cache`` are the tensors of :func:`split_names` of ``template`` (a state of the model,
    size and spec to run), in that order; ``text_mask`` comes as a float tensor (1.0: a real token). The
    inputs are not modified: a commit step (``commit=True``) writes the chunk into copies of the cache and
    returns them; a denoising step only reads the cache, so it returns it unchanged. The exporter's
    entry points (:mod:`s2dit.export.entry_points`) are this step with their own outputs.
    """

    def __init__(self, model: S2DiT, template: StreamState, commit: bool):
        super().__init__()
        self.model, self.template, self.commit = model, template, commit
        self.prompt_names, self.cache_names = split_names(template)

    def state(self, tensors: tuple[torch.Tensor, ...]) -> StreamState:
        """The :class:`StreamState` holding ``(*prompt, *cache)`` (the cache copied for a commit)."""
        n = len(self.prompt_names)
        prompt, cache = tensors[:n], tensors[n:]
        named = dict(zip(self.prompt_names[:-1], prompt[:-1], strict=True))
        named.update(
            {k: v.clone() if self.commit else v for k, v in zip(self.cache_names, cache, strict=True)}
        )
        named["text_mask"] = prompt[-1] > 0.5
        return self.template.load_tensors(named)

    def forward(self, x: torch.Tensor, t: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        state = self.state(tensors)
        v = self.model.forward_chunk(x, t, state, commit=self.commit)
        new = state.tensors()
        return (v, *(new[n] for n in self.cache_names))

"""The streaming state: everything a chunk-by-chunk run carries from one chunk to the next
(docs/architecture.md §3).

Per block:

* softmax attention (``F``, and ``S`` on the coarse grid): :class:`KVCache`, the keys and values of
  committed chunks in fixed-size slots ``[sinks | window]``. Keys are stored before RoPE; positions are
  assigned when they are read, densely (sinks first, then the window in order), so positions stay bounded
  for an unbounded stream. Until the window first overflows they equal the absolute positions, which is
  what makes a stream equal the block-causal run.
* LinConv hybrid attention (``L``): :class:`LinearCache`, the float32 linear-attention sums and the conv
  tail (the last ``k_t - 1`` frames of the conv input).
* text K/V of the current prompt for every block's cross-attention, computed once per prompt.

``count`` (a 0-d int64 tensor) is the number of committed chunks. All shapes are fixed for a given model,
size and :class:`StreamSpec`, and commits update tensors in place with slicing, so a state flattens into a
list of tensors for export (:meth:`StreamState.tensors`).
"""

from __future__ import annotations

import dataclasses

import torch

from s2dit.ops.linear_attention import LinearAttentionState


@dataclasses.dataclass(frozen=True)
class StreamSpec:
    """How a stream is cut and how much of it is remembered."""

    chunk_frames: int = 3  # latent frames per chunk
    window_chunks: int = 6  # recent committed chunks kept by softmax-attention blocks
    sink_chunks: int = 1  # first chunks pinned for the whole stream

    def __post_init__(self) -> None:
        if self.chunk_frames < 1 or self.window_chunks < 1 or self.sink_chunks < 0:
            raise ValueError(f"invalid stream spec {self}")

    @property
    def slots(self) -> int:
        return self.sink_chunks + self.window_chunks


def cache_layout(count: torch.Tensor, spec: StreamSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which cache slots hold a committed chunk, and at which (chunk) position each one is read.

    Args:
        count: committed chunks so far (0-d int64 tensor).

    Returns:
        ``valid [slots] bool``, ``position [slots] float32`` of each slot, and the 0-d ``position`` of the
        chunk being processed. Positions are dense: sinks ``0 .. s-1``, then the window's chunks in order.
    """
    s, W = spec.sink_chunks, spec.window_chunks
    dev = count.device
    in_sinks = torch.clamp(count, max=s)  # chunks held by the sinks
    in_window = torch.clamp(count - s, min=0, max=W)  # chunks held (visibly) by the window
    sink_idx = torch.arange(s, device=dev)
    age = W - 1 - torch.arange(W, device=dev)  # window slot W-1 holds the most recent chunk
    valid = torch.cat([sink_idx < count, age < in_window])
    current = in_sinks + in_window
    position = torch.cat([sink_idx, current - 1 - age]).float()
    return valid, position, current.float()


def chunk_frame_times(chunk_positions: torch.Tensor, chunk_frames: int) -> torch.Tensor:
    """Chunk positions ``[n]`` -> the times of their frames ``[n * chunk_frames]``."""
    offsets = torch.arange(chunk_frames, device=chunk_positions.device, dtype=torch.float32)
    return (chunk_positions.reshape(-1, 1) * chunk_frames + offsets).reshape(-1)


@dataclasses.dataclass
class ChunkContext:
    """What every block at one token grid needs to process the current chunk (built once per chunk).

    ``rope``: tables of the chunk's tokens at their dense read position (softmax attention);
    ``linear_rope``: at their absolute position (LCHA, whose sums cannot be re-indexed);
    ``cache_rope`` / ``cache_valid``: tables and visibility of the cache slots' tokens.
    """

    grid: tuple[int, int, int]  # (chunk frames, token rows, token columns)
    rope: tuple[torch.Tensor, torch.Tensor]
    linear_rope: tuple[torch.Tensor, torch.Tensor]
    cache_rope: tuple[torch.Tensor, torch.Tensor]
    cache_valid: torch.Tensor
    count: torch.Tensor
    spec: StreamSpec
    commit: bool


class KVCache:
    """Committed keys (before RoPE) and values of one softmax-attention block: ``[B, h, slots*n, d]``,
    where ``n`` is the tokens of one chunk at the block's grid."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor):
        self.k, self.v = k, v

    @classmethod
    def empty(
        cls, batch: int, heads: int, head_dim: int, chunk_tokens: int, spec: StreamSpec, like: torch.Tensor
    ):
        shape = (batch, heads, spec.slots * chunk_tokens, head_dim)
        return cls(like.new_zeros(shape), like.new_zeros(shape))

    def write(self, k: torch.Tensor, v: torch.Tensor, count: torch.Tensor, spec: StreamSpec) -> None:
        """Commit one chunk ``[B, h, n, d]``: it enters the window (the oldest window chunk leaves) and,
        while the sinks are not full, its sink slot too. In place, fixed shapes, no data-dependent branch."""
        n, s = k.shape[2], spec.sink_chunks
        for buf, new in ((self.k, k), (self.v, v)):
            buf[:, :, s * n :] = torch.cat([buf[:, :, (s + 1) * n :], new], dim=2)
            if s:
                slot = (torch.arange(s, device=count.device) == count).repeat_interleave(n)
                buf[:, :, : s * n] = torch.where(slot[:, None], new.repeat(1, 1, s, 1), buf[:, :, : s * n])


@dataclasses.dataclass
class LinearCache:
    """The committed state of one LCHA block: linear-attention sums and the conv tail."""

    sums: LinearAttentionState  # kv [B, h, d, d], k_sum [B, h, d], float32
    tail: torch.Tensor  # [B, D, k_t - 1, h, w]


class StreamState:
    """The state of one stream; see the module docstring. Built by ``S2DiT.init_state``."""

    def __init__(
        self,
        spec: StreamSpec,
        size: tuple[int, int],
        count: torch.Tensor,
        caches: list[KVCache | LinearCache],
        text_kv: list[tuple[torch.Tensor, torch.Tensor]],
        text_mask: torch.Tensor | None,
    ):
        self.spec = spec
        self.size = size  # (latent height, latent width) of every chunk
        self.count = count
        self.caches = caches
        self.text_kv = text_kv
        self.text_mask = text_mask

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor of the state by a stable name (the explicit-state form used for export)."""
        out = {"count": self.count}
        for i, c in enumerate(self.caches):
            if isinstance(c, KVCache):
                out[f"block{i}.k"], out[f"block{i}.v"] = c.k, c.v
            else:
                out[f"block{i}.kv"], out[f"block{i}.k_sum"] = c.sums.kv, c.sums.k_sum
                out[f"block{i}.tail"] = c.tail
        for i, (k, v) in enumerate(self.text_kv):
            out[f"block{i}.text_k"], out[f"block{i}.text_v"] = k, v
        if self.text_mask is not None:
            out["text_mask"] = self.text_mask
        return out

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> StreamState:
        """A state of the same structure holding ``tensors`` (names as in :meth:`tensors`)."""
        caches: list[KVCache | LinearCache] = []
        for i, c in enumerate(self.caches):
            if isinstance(c, KVCache):
                caches.append(KVCache(tensors[f"block{i}.k"], tensors[f"block{i}.v"]))
            else:
                sums = LinearAttentionState(tensors[f"block{i}.kv"], tensors[f"block{i}.k_sum"])
                caches.append(LinearCache(sums, tensors[f"block{i}.tail"]))
        text = [(tensors[f"block{i}.text_k"], tensors[f"block{i}.text_v"]) for i in range(len(self.text_kv))]
        return StreamState(self.spec, self.size, tensors["count"], caches, text, tensors.get("text_mask"))


PROMPT_KEYS = ("text_k", "text_v")


def split_names(state: StreamState) -> tuple[list[str], list[str]]:
    """``(prompt names, cache names)`` of a state, in :meth:`StreamState.tensors` order. The prompt is every
    block's text K/V and then ``text_mask`` (always listed: an explicit-state step takes a mask); the
    *cache* is the rest: ``count``, then per block its K/V slots, or its linear sums and conv tail."""
    names = [n for n in state.tensors() if n != "text_mask"]
    prompt = [n for n in names if n.split(".")[-1] in PROMPT_KEYS]
    return [*prompt, "text_mask"], [n for n in names if n not in prompt]

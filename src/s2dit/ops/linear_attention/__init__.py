"""Linear attention, RoPE on the numerator only, in three modes: bidirectional, block-causal, streamed."""

from s2dit.ops.linear_attention.naive import (
    LinearAttentionState,
    block_causal_linear_attention,
    linear_attention,
    linear_attention_chunk,
    quadratic_reference,
)

__all__ = [
    "LinearAttentionState",
    "block_causal_linear_attention",
    "linear_attention",
    "linear_attention_chunk",
    "quadratic_reference",
]

"""Depthwise 3D convolution, causal in time, with an explicit tail state for streaming."""

from s2dit.ops.causal_conv.naive import (
    causal_depthwise_conv3d,
    causal_depthwise_conv3d_2d,
    causal_depthwise_conv3d_3d,
)

__all__ = ["causal_depthwise_conv3d", "causal_depthwise_conv3d_2d", "causal_depthwise_conv3d_3d"]

"""Model configs: the architecture only (docs/architecture.md §3), with named presets."""

from __future__ import annotations

import dataclasses

from s2dit.errors import ConfigError

KINDS = {
    "L": "LinConv hybrid attention",
    "S": "stride self-attention (2×2 coarse grid)",
    "F": "full attention",
}


@dataclasses.dataclass
class ModelConfig:
    """An S2DiT architecture. ``layout`` has one letter per block: L, S or F (a run of S is one
    low-resolution stage)."""

    layout: str = "LLSSSSSSLL"
    width: int = 192
    heads: int = 3
    ffn_dim: int = 768
    in_channels: int = 16  # latent channels (Wan VAE: 16)
    text_dim: int = 384  # text-encoder width (MiniLM: 384, umT5-XXL: 4096)
    conv_kernel: list[int] = dataclasses.field(default_factory=lambda: [3, 3, 3])  # LCHA conv (t, h, w)
    freq_dim: int = 256  # sinusoidal timestep features
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        bad = sorted(set(self.layout) - set(KINDS))
        if not self.layout or bad:
            raise ConfigError(f"layout: {self.layout!r} must be a non-empty string of {', '.join(KINDS)}")
        if self.width % self.heads:
            raise ConfigError(f"width: {self.width} is not divisible by heads ({self.heads})")
        if (self.width // self.heads) % 2 or self.width // self.heads < 6:
            raise ConfigError(
                f"heads: head dimension {self.width // self.heads} must be even and >= 6 (3D RoPE)"
            )
        if (
            len(self.conv_kernel) != 3
            or any(k < 1 for k in self.conv_kernel)
            or any(k % 2 == 0 for k in self.conv_kernel[1:])
        ):
            raise ConfigError(f"conv_kernel: {self.conv_kernel} must be [t, h, w] with odd h and w")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads


PRESETS: dict[str, ModelConfig] = {
    # 6.9M parameters, 1.1 GFLOPs per latent frame at 256x144: one pass over a 3-latent-frame chunk
    # takes ~42 ms on 2 CPU cores (float32), so 4 steps + commit stream ~57 video frames/s before decoding.
    # (Width 256 / LLLSSSSLLL measured 88 ms per pass: too close to real time once decoding is added.)
    "micro": ModelConfig(layout="LLSSSSSSLL", width=192, heads=3, ffn_dim=768, text_dim=384),
    # ~0.5B parameters at 512x288 with umT5 text (the paper's mobile regime).
    "mobile": ModelConfig(
        layout="LLLLLLLL" + "S" * 12 + "LLLLLLLL", width=1024, heads=16, ffn_dim=4096, text_dim=4096
    ),
}


def preset(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    return dataclasses.replace(PRESETS[name])

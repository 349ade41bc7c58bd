"""s2dit: the Streaming Sandwich Diffusion Transformer.

Axis letters used in shape comments and docstrings throughout the package:

    B  batch                      C  channels (3 for pixels, 16 for latents)
    F  frames (video or latent)   T  latent frames, when both appear
    H  height                     W  width
    N  tokens                     D  model width
    h  attention heads            L  text tokens

Pixels are ``[B, 3, F, H, W]`` floats in [-1, 1] with ``F = 4k + 1``; frames handed to video
files are ``[F, H, W, 3]`` uint8 (RGB).
"""

__version__ = "0.1.0"

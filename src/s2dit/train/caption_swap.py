"""Caption-swap loss gaps: does the denoiser use each attribute of its prompt?

For a clip and its caption, swap one attribute of the first object (colour, shape, motion, size) or the
number of objects, and measure the flow-matching loss of the clip under the swapped caption minus the loss
under its own caption, with the same noise and noise levels. A model that ignores an attribute has a gap
of zero for it; one that draws what it is told pays for the wrong word. No sampling is needed, so the
trainer logs these gaps at every checkpoint as its cheap progress signal (``swap_gap_<attribute>``).

Both captions are written by the micro world's own captioner from the same random stream, so they differ
in the swapped words only.
"""

from __future__ import annotations

import numpy as np
import torch

from s2dit.config import VideoSpec
from s2dit.data.micro.captions import write_caption
from s2dit.data.micro.scene import Scene, SceneObject
from s2dit.data.micro.vocab import COLORS, MOTION_FAMILIES, MOTIONS, SHAPES, SIZES, motion_family
from s2dit.diffusion.flow import NUM_TRAIN_TIMESTEPS, add_noise, flow_matching_loss
from s2dit.latent.text import pad_text

ATTRIBUTES = ("color", "shape", "motion", "size", "count")
SIGMAS = (0.3, 0.5, 0.7, 0.9)

# A motion swapped for one that looks as different as possible (the opposite direction where there is one).
_OPPOSITE = {
    "left": "right",
    "right": "left",
    "up": "down",
    "down": "up",
    "grow": "shrink",
    "shrink": "grow",
    "still": "right",
    "bounce_horizontal": "still",
    "bounce_vertical": "still",
    "diagonal_up_left": "diagonal_down_right",
    "diagonal_up_right": "diagonal_down_left",
    "diagonal_down_left": "diagonal_up_right",
    "diagonal_down_right": "diagonal_up_left",
}
assert set(_OPPOSITE) == set(MOTIONS) and {motion_family(m) for m in MOTIONS} == set(MOTION_FAMILIES)


def _scene(background: str, objects: list[dict]) -> Scene:
    """A scene holding only what captions name (no tracks)."""
    none = np.zeros((1, 2))
    return Scene(
        background=background,
        objects=[
            SceneObject(o["shape"], o["color"], o["size"], o["motion"], none, none[:, 0]) for o in objects
        ],
        video=VideoSpec(),
    )


def swapped_objects(objects: list[dict], attribute: str) -> list[dict]:
    """``objects`` with one attribute of the first object changed (or, for ``count``, one object fewer,
    or one more when there is only one)."""
    out = [dict(o) for o in objects]
    first = out[0]
    if attribute == "color":
        used = {o["color"] for o in out}
        first["color"] = next(c for c in COLORS if c not in used)
    elif attribute == "shape":
        first["shape"] = SHAPES[(SHAPES.index(first["shape"]) + 2) % len(SHAPES)]
    elif attribute == "motion":
        first["motion"] = _OPPOSITE[first["motion"]]
    elif attribute == "size":
        first["size"] = next(s for s in SIZES if s != first["size"])
    elif attribute == "count":
        if len(out) > 1:
            out.pop()
        else:
            used = {o["color"] for o in out}
            color = next(c for c in COLORS if c not in used)
            out.append({**first, "color": color, "shape": SHAPES[(SHAPES.index(first["shape"]) + 1) % 4]})
    else:
        raise ValueError(f"unknown attribute {attribute!r}")
    return out


def swap_captions(row: dict, seed: int) -> dict[str, str]:
    """The clip's own caption (``"true"``) and one caption per attribute of :data:`ATTRIBUTES`."""
    objects, background = row["objects"], row["background"]

    def caption(objs):
        return write_caption(np.random.default_rng(seed), _scene(background, objs))

    return {"true": caption(objects), **{a: caption(swapped_objects(objects, a)) for a in ATTRIBUTES}}


class CaptionSwap:
    """Swap gaps on fixed clips: built once (captions encoded once), measured with :meth:`gaps`."""

    def __init__(self, data, indices: list[int], text_encoder, text_len: int, seed: int = 0):
        clips = data.clips(indices)
        self.x0 = clips["latents"]
        captions = [swap_captions(row, seed + i) for i, row in enumerate(clips["rows"])]
        self.names = ["true", *ATTRIBUTES]
        prompts = [c[name] for name in self.names for c in captions]  # name-major
        tokens, mask = text_encoder.encode(prompts)
        trimmed = [t[m] for t, m in zip(tokens, mask, strict=True)]
        self.text, self.mask = pad_text(trimmed, text_len)
        g = torch.Generator().manual_seed(seed)
        self.noise = torch.randn(self.x0.shape, generator=g)

    @torch.no_grad()
    def gaps(self, model, device: torch.device | str = "cpu", batch: int = 32) -> dict[str, float]:
        """Mean loss under each swapped caption minus the mean loss under the clips' own (over clips and
        the noise levels :data:`SIGMAS`)."""
        n, T = self.x0.shape[0], self.x0.shape[2]
        losses = {name: 0.0 for name in self.names}
        for k, name in enumerate(self.names):
            text, mask = self.text[k * n : (k + 1) * n], self.mask[k * n : (k + 1) * n]
            for s in SIGMAS:
                for i in range(0, n, batch):
                    x0, noise = self.x0[i : i + batch].to(device), self.noise[i : i + batch].to(device)
                    sigma = torch.full((x0.shape[0], T), s, device=device)
                    v = model(
                        add_noise(x0, noise, sigma),
                        sigma * NUM_TRAIN_TIMESTEPS,
                        text[i : i + batch].to(device),
                        mask[i : i + batch].to(device),
                    )
                    losses[name] += float(flow_matching_loss(v, x0, noise)) * x0.shape[0]
        true = losses["true"] / (n * len(SIGMAS))
        return {a: losses[a] / (n * len(SIGMAS)) - true for a in ATTRIBUTES}

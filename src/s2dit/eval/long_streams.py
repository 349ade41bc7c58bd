"""``s2dit eval streams``: a streaming model run far past its training length, and across prompt switches,
scored window by window.

A streaming student is trained on clips of ``T`` latent frames (``4(T - 1) + 1`` video frames, the
*window*). Streamed ``L`` times longer, it may drift: objects fade, multiply or stop. Each held-out prompt is
streamed for ``L·T`` latent frames and every whole window of the decoded video is scored against the prompt
with the strict micro metric (:func:`~s2dit.data.micro.metrics.score_clip`); the *drift* at ``L`` is the
pass rate of the last window minus that of the first.

A prompt switch: prompt ``i`` streams for ``T`` latent frames (rounded up to whole chunks), then the stream
switches to prompt ``j`` (the next held-out prompt) and goes on for another ``T``. The window that starts at
the first frame made after the switch is scored against ``j``; its pass rate is compared with ``j``'s pass
rate from a fresh start (the first window of ``j``'s own stream).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from s2dit.atomic import write_text_atomic
from s2dit.errors import S2DitError


def window_frames(latent_frames: int) -> int:
    """Video frames decoded from ``latent_frames`` latent frames (the VAE's first latent frame is one)."""
    return 4 * (latent_frames - 1) + 1


def score_windows(frames: np.ndarray, objects: list[dict], window: int) -> list[dict]:
    """:func:`~s2dit.data.micro.metrics.score_clip` of each whole window ``frames[k·window:(k+1)·window]``
    of a ``[F, H, W, 3]`` uint8 stream (a tail shorter than a window is not scored)."""
    from s2dit.data.micro.metrics import score_clip

    if window < 1 or len(frames) < window:
        raise S2DitError(f"a stream of {len(frames)} frames holds no whole window of {window}")
    return [score_clip(frames[k * window : (k + 1) * window], objects) for k in range(len(frames) // window)]


def drift(windows: list[list[dict]]) -> dict:
    """Pass rate per window position over prompts (``windows[prompt][k]``, all equally long), the first
    and last windows' pass rates and ``drift = last - first``; beside them the lenient mean accuracy per
    window position (it still moves where every pass rate is 0)."""
    from s2dit.data.micro.metrics import summarize

    if not windows or len({len(w) for w in windows}) != 1:
        raise S2DitError("drift needs one equally long list of window scores per prompt")
    at = [summarize([w[k] for w in windows]) for k in range(len(windows[0]))]
    rates = [s["pass_rate"] for s in at]
    accuracy = [s["mean_accuracy"] for s in at]
    return {
        "window_pass_rates": rates,
        "first": rates[0],
        "last": rates[-1],
        "drift": rates[-1] - rates[0],
        "window_mean_accuracy": accuracy,
        "accuracy_drift": accuracy[-1] - accuracy[0],
    }


def score_after_switch(frames: np.ndarray, switch_frame: int, objects: list[dict], window: int) -> dict:
    """The window of ``frames`` that starts at ``switch_frame`` (the first frame made after a switch),
    scored against the new prompt's ``objects``."""
    from s2dit.data.micro.metrics import score_clip

    if switch_frame < 0 or switch_frame + window > len(frames):
        raise S2DitError(
            f"no whole window of {window} frames after frame {switch_frame} in a {len(frames)}-frame stream"
        )
    return score_clip(frames[switch_frame : switch_frame + window], objects)


def _decode(vae, latents: torch.Tensor) -> list[np.ndarray]:
    """Each stream decoded on its own (a long stream's pixels are large): ``[F, H, W, 3]`` uint8 each."""
    from s2dit.videoio import pixels_to_uint8

    return [pixels_to_uint8(vae.decode(z[None].float().cpu())[0]) for z in latents]


def evaluate_streams(
    checkpoint: str | os.PathLike,
    latents: str | os.PathLike,
    out: str | os.PathLike,
    *,
    holdout: int = 64,
    prompts: int = 16,
    lengths: tuple[int, ...] = (4, 16),
    switches: bool = True,
    seed: int = 0,
    device: str = "cpu",
    progress=None,
) -> dict:
    """Drift at each of ``lengths`` (multiples of the training length) and, with ``switches``, the pass
    rate after a prompt switch against the fresh-start pass rate, for the first ``prompts`` held-out
    prompts of ``latents``. Writes ``out/streams.json`` (also returned) and each length's videos'
    per-window scores. ``progress(text)`` hears what is being streamed."""
    from s2dit.data.micro.captions import parse_caption
    from s2dit.diffusion.pipeline import read_pipeline
    from s2dit.diffusion.sampling import Condition
    from s2dit.diffusion.stream_pipeline import frames_before
    from s2dit.diffusion.streaming import StreamSampler
    from s2dit.latent.vae import load_vae
    from s2dit.model.denoiser import load_denoiser
    from s2dit.train.data import LatentBatches

    path, out = Path(checkpoint), Path(out)
    if not path.exists():
        raise S2DitError(f"--checkpoint {path} does not exist")
    if not lengths or any(n < 1 for n in lengths):
        raise S2DitError(f"--lengths {list(lengths)}: each must be a whole number >= 1")
    info = read_pipeline(path)
    model = load_denoiser(path, device).eval()
    if not hasattr(model, "forward_chunk"):
        raise S2DitError(f"{path} holds a {type(model).__name__}: only an S2DiT streams")
    if not info.vae:
        raise S2DitError(f"{path}: its pipeline.yaml names no VAE to decode with")
    vae = load_vae(info.vae)
    data = LatentBatches(str(latents), info.text_len, holdout, seed=0)
    indices = (data.holdout or list(range(data.train_size)))[:prompts]
    if len(indices) < 2 and switches:
        raise S2DitError("prompt switches need at least 2 prompts")
    clips = data.clips(indices)
    objects = [r.get("objects") or parse_caption(r.get("caption", ""))["objects"] for r in clips["rows"]]
    if not all(objects):
        raise S2DitError(f"{latents}: its held-out clips are not micro-world prompts (nothing to score)")
    B, (_, train_frames, H, W) = len(indices), clips["latents"].shape[1:]
    settings, c = info.stream, info.stream.chunk_frames
    cond = Condition(clips["text"].to(device), clips["mask"].to(device))
    seeds = [seed + i for i in range(B)]
    window = window_frames(train_frames)
    per_length = {}
    for n in lengths:
        chunks = -(-n * train_frames // c)
        if progress:
            progress(f"{B} streams of {chunks * c} latent frames ({n}x the training length)")
        frames = _decode(vae, StreamSampler(model, cond, (H, W), settings, seed=seeds).take(chunks))
        windows = [score_windows(f, o, window) for f, o in zip(frames, objects, strict=True)]
        per_length[n] = {**drift(windows), "latent_frames": chunks * c, "windows": len(windows[0])}
        write_text_atomic(out / f"length-{n}x.jsonl", "".join(_rows(clips["rows"], windows)))
    result = {"checkpoint": str(path), "prompts": B, "window_frames": window, "lengths": per_length}
    if switches:
        at = -(-train_frames // c)  # the switch chunk: the first prompt has had a whole training length
        order = [(i + 1) % B for i in range(B)]
        new = Condition(cond.text[order], cond.mask[order])
        if progress:
            progress(f"{B} streams switched at chunk {at}")
        sampler = StreamSampler(model, cond, (H, W), settings, seed=seeds)
        frames = _decode(vae, sampler.take(2 * at, (at, new)))
        first = frames_before(at, c)
        after = [score_after_switch(f, first, objects[j], window) for f, j in zip(frames, order, strict=True)]
        fresh = per_length[lengths[0]]["first"]
        switched = float(np.mean([s["passed"] for s in after]))
        result["switch"] = {
            "chunk": at,
            "frame": first,
            "to_prompt": order,
            "pass_rate_after_switch": switched,
            "fresh_start_pass_rate": fresh,
            "ratio": switched / fresh if fresh else None,
        }
    write_text_atomic(out / "streams.json", json.dumps(result, indent=1))
    return result


def _rows(rows: list[dict], windows: list[list[dict]]):
    for row, scores in zip(rows, windows, strict=True):
        passed = [s["passed"] for s in scores]
        yield json.dumps({"caption": row.get("caption", ""), "window_passed": passed}) + "\n"

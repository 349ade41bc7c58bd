"""``s2dit eval vae``: reconstruction quality and speed of an autoencoder on held-out clips.

Each clip is encoded whole, then decoded chunk by chunk through the streaming decoder (the path a stream
uses); the report gives PSNR against the input (pixels in [0, 1]), encode clips/s and decode frames/s, and
the PSNR per latent frame (frame 0, then each group of 4 frames, over all clips' pooled squared error): a
causal VAE that decays along the clip (e.g. one trained on clips shorter than its receptive field) shows it
there.
With ``decoder_path`` (a decoder distilled by ``s2dit train decoder``) the same latents also go through that
decoder: its PSNR against the VAE's own decode (overall and per latent frame) and against the input, its
frames/s, and the speed ratio.
With ``recon_dir`` the reconstructions are written there as mp4s with a ``clips.jsonl`` (the source rows,
ground-truth objects included, pointing at the reconstructions), so ``s2dit eval micro`` can score them: on a
micro world, that score is the ceiling of any model generating in this latent space.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from s2dit.config import VideoSpec
from s2dit.errors import S2DitError
from s2dit.latent.vae import psnr


@torch.no_grad()
def evaluate_vae(
    vae_path: str,
    videos: str,
    *,
    clips: int = 32,
    chunk: int = 3,
    decoder_path: str | None = None,
    recon_dir: str | None = None,
    spec: VideoSpec | None = None,
    progress: bool = True,
) -> dict:
    """The report of the module docstring; ``spec`` sets the clips' size, frames and rate (default
    256x144, 33 frames at 16 fps)."""
    from tqdm import tqdm

    from s2dit.atomic import write_text_atomic
    from s2dit.data.video_folder import VideoFolderDataset
    from s2dit.latent.vae import load_vae
    from s2dit.videoio import pixels_to_uint8, write_video

    if clips < 1 or chunk < 1:
        raise S2DitError("--clips and --chunk must be at least 1")
    if recon_dir and Path(recon_dir).resolve() == Path(videos).resolve():
        raise S2DitError("--recon must be another folder than --videos (its clips.jsonl would be replaced)")
    source_rows = _source_rows(videos)
    vae = load_vae(vae_path)
    student = load_vae(decoder_path) if decoder_path else None
    dataset = VideoFolderDataset(videos, spec or VideoSpec())
    n = min(clips, len(dataset))
    psnrs, encode_s, decode_s, frames = [], 0.0, 0.0, 0
    student_vs_vae, student_vs_input, student_s = [], [], 0.0
    curve, student_curve = 0.0, 0.0  # summed squared error per latent frame
    rows = []
    if recon_dir:
        Path(recon_dir).mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(n), desc="eval vae", unit="clip", disable=not progress):
        item = dataset[i]
        pixels = item["pixels"][None]  # (1, 3, F, H, W)
        start = time.perf_counter()
        latents = vae.encode(pixels)
        encode_s += time.perf_counter() - start
        out, seconds = _stream_decode(vae, latents, chunk)
        decode_s += seconds
        frames += out.shape[2]
        psnrs.append(psnr(out, pixels))
        curve = curve + latent_frame_mse(out, pixels)
        if recon_dir:
            name = f"{i:06d}.mp4"
            write_video(Path(recon_dir) / name, pixels_to_uint8(out[0]), dataset.spec.fps)
            row = source_rows.get(item["video"], {})
            if (row.get("frames"), row.get("fps")) != (dataset.spec.frames, dataset.spec.fps):
                row = {"caption": item["caption"]}  # per-frame ground truth only at the source's own rate
            rows.append({**row, "video": name, "source": item["video"]})
        if student is not None:
            fast, seconds = _stream_decode(student, latents, chunk)
            student_s += seconds
            target = out.clamp(-1, 1)
            student_vs_vae.append(psnr(fast, target))
            student_curve = student_curve + latent_frame_mse(fast, target)
            student_vs_input.append(psnr(fast, pixels))
    report = {
        "vae": str(vae_path),
        "videos": str(videos),
        "clips": n,
        "size": f"{pixels.shape[-1]}x{pixels.shape[-2]}",
        "frames_per_clip": pixels.shape[2],
        "fps": dataset.spec.fps,
        "psnr_db": sum(psnrs) / n,
        "psnr_db_min": min(psnrs),
        "psnr_db_by_latent_frame": _decibels(curve / n),
        "encode_clips_per_s": n / encode_s,
        "decode_frames_per_s": frames / decode_s,
        "decode_chunk_latent_frames": chunk,
        "threads": torch.get_num_threads(),
    }
    if recon_dir:
        write_text_atomic(Path(recon_dir) / "clips.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        report["reconstructions"] = str(recon_dir)
    if student is not None:
        report.update(
            decoder=str(decoder_path),
            decoder_psnr_vs_vae_db=sum(student_vs_vae) / n,
            decoder_psnr_vs_vae_db_by_latent_frame=_decibels(student_curve / n),
            decoder_psnr_vs_input_db=sum(student_vs_input) / n,
            decoder_frames_per_s=frames / student_s,
            decoder_speedup=decode_s / student_s,
        )
    return report


def latent_frame_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error (on the [0, 1] scale) of two videos ``[B, 3, F, H, W]`` in [-1, 1], per latent
    frame: ``[1 + (F - 1) / 4]``, frame 0 alone, then each group of 4 frames (the frames a latent frame
    decodes to)."""
    per_frame = ((a.float() - b.float()) / 2).square().mean((0, 1, 3, 4))  # (F,)
    return torch.cat([per_frame[:1], per_frame[1:].unflatten(0, (-1, 4)).mean(1)])


def _decibels(mse: torch.Tensor) -> list[float]:
    return [round(float(-10 * torch.log10(m.clamp_min(1e-10))), 2) for m in mse]


def _source_rows(videos: str) -> dict[str, dict]:
    """A micro world's ``clips.jsonl`` rows by video path (empty for other folders)."""
    index = Path(videos) / "clips.jsonl"
    if not index.is_file():
        return {}
    rows = (json.loads(line) for line in index.read_text().splitlines() if line.strip())
    return {r["video"]: r for r in rows if isinstance(r, dict) and "video" in r}


def _stream_decode(vae, latents: torch.Tensor, chunk: int) -> tuple[torch.Tensor, float]:
    decoder = vae.streaming_decoder()
    start = time.perf_counter()
    out = torch.cat(
        [decoder.push(latents[:, :, s : s + chunk]) for s in range(0, latents.shape[2], chunk)], 2
    )
    return out, time.perf_counter() - start

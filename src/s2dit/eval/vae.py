"""``s2dit eval vae``: reconstruction quality and speed of an autoencoder on held-out clips.

Each clip is encoded whole, then decoded chunk by chunk through the streaming decoder (the path a stream
uses); the report gives PSNR against the input (pixels in [0, 1]), encode clips/s and decode frames/s.
"""

from __future__ import annotations

import time

import torch

from s2dit.config import VideoSpec
from s2dit.errors import S2DitError


@torch.no_grad()
def evaluate_vae(
    vae_path: str, videos: str, *, clips: int = 32, chunk: int = 3, progress: bool = True
) -> dict:
    from tqdm import tqdm

    from s2dit.data.encode import load_vae
    from s2dit.data.video_folder import VideoFolderDataset

    if clips < 1 or chunk < 1:
        raise S2DitError("--clips and --chunk must be at least 1")
    vae = load_vae(vae_path)
    dataset = VideoFolderDataset(videos, VideoSpec())
    n = min(clips, len(dataset))
    psnrs, encode_s, decode_s, frames = [], 0.0, 0.0, 0
    for i in tqdm(range(n), desc="eval vae", unit="clip", disable=not progress):
        pixels = dataset[i]["pixels"][None]  # (1, 3, F, H, W)
        start = time.perf_counter()
        latents = vae.encode(pixels)
        encode_s += time.perf_counter() - start
        decoder = vae.streaming_decoder()
        start = time.perf_counter()
        out = torch.cat(
            [decoder.push(latents[:, :, s : s + chunk]) for s in range(0, latents.shape[2], chunk)], 2
        )
        decode_s += time.perf_counter() - start
        frames += out.shape[2]
        mse = ((out - pixels) / 2).square().mean().clamp_min(1e-10)
        psnrs.append(float(-10 * torch.log10(mse)))
    return {
        "vae": str(vae_path),
        "videos": str(videos),
        "clips": n,
        "size": f"{pixels.shape[-1]}x{pixels.shape[-2]}",
        "frames_per_clip": pixels.shape[2],
        "psnr_db": sum(psnrs) / n,
        "psnr_db_min": min(psnrs),
        "encode_clips_per_s": n / encode_s,
        "decode_frames_per_s": frames / decode_s,
        "decode_chunk_latent_frames": chunk,
        "threads": torch.get_num_threads(),
    }

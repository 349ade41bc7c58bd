"""A live-viewer server with a tiny random model, for the server and browser tests."""

from __future__ import annotations

import contextlib
import threading

import torch

from s2dit.diffusion.stream_pipeline import StreamModel, hashed_prompt
from s2dit.diffusion.streaming import StreamSettings
from s2dit.latent.tiny_ae import TinyAEConfig, TinyAutoencoder
from s2dit.model.config import ModelConfig
from s2dit.model.transformer import S2DiT
from s2dit.serve.server import StreamServer, serve


def tiny_parts(latent_size: tuple[int, int] = (6, 8)) -> StreamModel:
    torch.manual_seed(0)
    model = S2DiT(ModelConfig(layout="LSSL", width=32, heads=2, ffn_dim=64, text_dim=16)).eval()
    vae = TinyAutoencoder(TinyAEConfig(widths=[4, 4, 8, 8])).eval()
    return StreamModel(
        model=model,
        vae=vae,
        encode=lambda p: hashed_prompt(p, 16),
        latent_size=latent_size,
        settings=StreamSettings(steps=2, chunk_frames=1, window_chunks=2),
        fps=50.0,
        random_weights=True,
    )


@contextlib.contextmanager
def running_server(
    latent_size: tuple[int, int] = (6, 8),
    max_streams: int = 2,
    check_prompts: bool = False,
    dtype: torch.dtype = torch.float32,
):
    srv: StreamServer = serve(
        tiny_parts(latent_size),
        "127.0.0.1",
        0,
        max_streams=max_streams,
        check_prompts=check_prompts,
        dtype=dtype,
    )
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)

"""``bench stream --compile``: the chunk step goes through torch.compile, the warm-up pays for it."""

import dataclasses
import warnings

import pytest
import torch

from s2dit.diffusion.stream_pipeline import load_stream_model
from s2dit.diffusion.streaming import StreamSettings
from s2dit.eval.bench_stream import bench_model
from s2dit.model.transformer import S2DiT


@pytest.mark.slow
def test_the_compiled_mode_compiles_the_chunk_step_and_the_eager_mode_does_not():
    from torch._dynamo.utils import counters

    settings = StreamSettings(steps=1, chunk_frames=1, window_chunks=2, sink_chunks=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights
        parts = load_stream_model(None, preset="micro", size=(64, 48), settings=settings)
    config = dataclasses.replace(parts.model.config, layout="LS", width=32, heads=2, ffn_dim=64)

    def tiny():
        torch.manual_seed(0)
        return dataclasses.replace(parts, model=S2DiT(config).eval())

    torch._dynamo.reset()
    counters.clear()
    eager = bench_model("eager", tiny(), 3, torch.float32)
    assert counters["stats"]["unique_graphs"] == 0
    compiled = bench_model("compiled", tiny(), 3, torch.float32, compile=True)
    assert counters["stats"]["unique_graphs"] >= 2  # a denoising pass and a commit pass
    for row in (eager, compiled):
        assert row["chunks_timed"] == 3 and row["warmup_s"] > 0 and row["end_to_end_fps"] > 0
    torch._dynamo.reset()

"""The teacher recipe's pieces: precision choice, EMA warm-up, unbiased flow matching, compile."""

import dataclasses

import pytest
import torch
from train_fixtures import tiny_config

from s2dit import precision
from s2dit.diffusion.timesteps import TimestepSampling
from s2dit.errors import ConfigError
from s2dit.model.denoiser import load_denoiser
from s2dit.train.config import OptimConfig
from s2dit.train.ema import EMA
from s2dit.train.log import read_log
from s2dit.train.methods import FlowMatching
from s2dit.train.trainer import train


def test_auto_precision_is_bf16_exactly_where_bf16_matmuls_are_faster(monkeypatch):
    monkeypatch.setenv("S2DIT_CPU_BF16", "1")
    assert precision.compute_dtype("auto", "cpu") == torch.bfloat16
    assert isinstance(precision.autocast("auto", "cpu"), torch.autocast)
    monkeypatch.setenv("S2DIT_CPU_BF16", "0")
    assert precision.compute_dtype("auto", "cpu") == torch.float32
    assert precision.compute_dtype("bfloat16", "cpu") == torch.bfloat16  # asked for explicitly
    assert precision.compute_dtype("auto", "cuda") == torch.bfloat16
    monkeypatch.setenv("S2DIT_CPU_BF16", "yes")
    with pytest.raises(ConfigError, match="S2DIT_CPU_BF16"):
        precision.compute_dtype("auto", "cpu")
    with pytest.raises(ConfigError, match="precision"):
        precision.compute_dtype("half", "cpu")


@pytest.mark.parametrize(
    ("bf16_s", "expected"), [(0.4, torch.bfloat16), (0.8, torch.float32), (1.6, torch.float32)]
)
def test_auto_precision_on_a_cpu_follows_the_measured_matmul_speed(monkeypatch, bf16_s, expected):
    """float32 timed at 1.0 s: bf16 at 0.4 s (2.5x) pays; at 0.8 s (1.25x, under the 1.5x needed) not."""
    monkeypatch.delenv("S2DIT_CPU_BF16", raising=False)
    fake = lambda a, b: bf16_s if a.dtype == torch.bfloat16 else 1.0  # noqa: E731
    monkeypatch.setattr(precision, "_fastest_matmul_s", fake)
    precision.cpu_bf16_speedup.cache_clear()
    try:
        assert precision.cpu_bf16_speedup() == pytest.approx(1.0 / bf16_s)
        assert precision.compute_dtype("auto", "cpu") == expected
    finally:
        precision.cpu_bf16_speedup.cache_clear()
    monkeypatch.undo()
    assert precision.cpu_bf16_speedup() > 0  # the real measurement runs and is cached for the process


def test_ema_warmup_follows_its_decay_formula():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.99, warmup=True)
    expected = 0.0
    for k in range(300):
        with torch.no_grad():
            model.weight.fill_(float(k + 1))
        ema.update(model)
        d = min(0.99, (1 + k) / (10 + k))
        expected = d * expected + (1 - d) * (k + 1)
        assert ema.params[0].item() == pytest.approx(expected, rel=1e-5)
    plain = EMA(model, decay=0.99)
    plain.update(model)
    assert plain.params[0].item() == pytest.approx(0.99 * 300 + 0.01 * 300)


def losses(folder):
    return [r["loss"] for r in read_log(folder) if "loss" in r]


def test_the_recipe_resumes_exactly(latents, tmp_path):
    recipe = dict(ema_warmup=True, ema_decay=0.99, optim=OptimConfig(lr=1e-3, warmup_steps=2))
    whole = tiny_config(latents, tmp_path / "whole", "wan", steps=6, checkpoint_every=3, **recipe)
    train(whole, progress=False)
    parts = dataclasses.replace(whole, out=str(tmp_path / "parts"))
    train(parts, max_steps=4, progress=False)
    train(parts, progress=False)
    assert losses(tmp_path / "parts") == losses(tmp_path / "whole")
    a, b = load_denoiser(tmp_path / "whole").state_dict(), load_denoiser(tmp_path / "parts").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the EMA's warm-up counter resumed too


def test_flow_matching_weighs_every_position_alike():
    """An error on an object costs what the same error on the background costs. A weight that depends on
    the clean latents (e.g. more weight on objects) makes the minimiser a weighted mean that over-counts
    objects everywhere: the teacher trained that way drew coloured confetti over a third of the frame."""
    x0 = torch.zeros(1, 16, 1, 18, 32)
    x0[..., 4:7, 20:24] = 1.0
    batch = {"latents": x0, "text": torch.zeros(1, 4, 8), "mask": torch.ones(1, 4, dtype=torch.bool)}
    batch["positions"] = [0]
    null = (torch.zeros(1, 4, 8), torch.ones(1, 4, dtype=torch.bool))
    method = FlowMatching(TimestepSampling(), 0.0, 0)
    target = method.inputs(batch, null)
    velocity = target["noise"] - x0

    def loss_with_error_at(rows, cols):
        def model(x, t, text, mask, chunk_frames=None):
            v = velocity.clone()
            v[..., rows, cols] += 1.0
            return v

        return method.loss(model, batch, null, "cpu")[0]

    on_object, on_background = loss_with_error_at(5, 21), loss_with_error_at(12, 5)
    assert on_object / on_background == pytest.approx(1.0, rel=1e-5)
    # the plain mean of the squared error: 1 at one position of each channel
    assert on_object == pytest.approx(x0.shape[1] / x0.numel(), rel=1e-4)


@pytest.mark.slow
def test_a_compiled_step_trains_like_the_eager_one(latents, tmp_path):
    eager = tiny_config(latents, tmp_path / "eager", steps=3, checkpoint_every=3)
    train(eager, progress=False)
    compiled = dataclasses.replace(eager, out=str(tmp_path / "compiled"), compile=True)
    train(compiled, progress=False)
    assert losses(tmp_path / "compiled") == pytest.approx(losses(tmp_path / "eager"), rel=1e-4)


def test_compile_auto_compiles_exactly_the_bf16_runs(monkeypatch):
    monkeypatch.setenv("S2DIT_CPU_BF16", "1")
    assert precision.compiles("auto", "auto", "cpu") and not precision.compiles("auto", "float32", "cpu")
    monkeypatch.setenv("S2DIT_CPU_BF16", "0")
    assert not precision.compiles("auto", "auto", "cpu") and precision.compiles("auto", "bfloat16", "cpu")
    assert precision.compiles(True, "float32", "cpu") and not precision.compiles(False, "bfloat16", "cpu")


@pytest.mark.parametrize("bf16", ["0", "1"])
def test_the_trainer_compiles_where_compile_auto_says(latents, tmp_path, monkeypatch, bf16):
    from s2dit.config import from_dict
    from s2dit.train.config import TrainConfig

    assert from_dict(TrainConfig, {"compile": "auto"}).compile == "auto"
    with pytest.raises(ConfigError, match="compile"):
        from_dict(TrainConfig, {"compile": "sometimes"})
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(self))
    monkeypatch.setenv("S2DIT_CPU_BF16", bf16)
    train(tiny_config(latents, tmp_path / "run", steps=1, compile="auto"), progress=False)
    assert len(compiled) == int(bf16)

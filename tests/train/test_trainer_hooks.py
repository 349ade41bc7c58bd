"""The denoiser trainer's own hooks (a hand mutation-testing pass, docs/mutation-testing.md): the logged rate
is the configured schedule, accumulation splits a batch without changing it, the method sees the step, the EMA
warm-up, the logged tokens and samples seen, when evaluation runs, what pipeline.yaml records, which weights
the swap gaps and the evaluation use, and which settings a resumed run may change."""

import dataclasses

import pytest
import torch
from train_fixtures import tiny_config

from s2dit.diffusion.pipeline import read_pipeline
from s2dit.model.denoiser import load_denoiser
from s2dit.train.checkpoint import checkpoint_files
from s2dit.train.config import EvalConfig, OptimConfig
from s2dit.train.data import LatentBatches
from s2dit.train.log import read_log
from s2dit.train.schedule import learning_rate
from s2dit.train.trainer import Trainer, train


def test_the_logged_rate_follows_the_cosine_schedule_down_to_its_floor(latents, tmp_path):
    optim = OptimConfig(lr=1e-3, warmup_steps=1, schedule="cosine", min_lr_ratio=0.25)
    cfg = tiny_config(latents, tmp_path / "run", steps=4, optim=optim)
    trainer = Trainer(cfg, progress=False)
    assert trainer.rate(4) == pytest.approx(0.25e-3)  # the floor at the end, not zero
    trainer.run()
    rows = [r for r in read_log(tmp_path / "run") if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:  # row N is the step that ran at index N - 1
        want = 1e-3 * learning_rate(r["step"] - 1, steps=4, warmup_steps=1, schedule="cosine", min_ratio=0.25)
        assert r["lr"] == pytest.approx(want, rel=1e-9)
    assert rows[0]["lr"] == pytest.approx(1e-3) and rows[-1]["lr"] == pytest.approx(0.4375e-3)


def test_accumulating_gradients_gives_the_same_steps_as_one_large_batch(latents, tmp_path):
    runs = {}
    for accum in (1, 2):
        cfg = tiny_config(latents, tmp_path / f"accum{accum}", steps=2, grad_accum=accum)
        train(cfg, progress=False)
        runs[accum] = [r for r in read_log(tmp_path / f"accum{accum}") if "loss" in r]
    assert len(runs[1]) == len(runs[2]) == 2
    for one, two in zip(runs[1], runs[2], strict=True):  # two halves of the batch, not one half twice
        assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
        assert two["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-4)


class _RecordsSteps:
    """Wraps a method and remembers the step each loss call is given (DMD alternates on it)."""

    def __init__(self, method):
        self.method, self.steps = method, []

    def loss(self, model, batch, null, device, step=0):
        self.steps.append(step)
        return self.method.loss(model, batch, null, device, step)


def test_the_method_is_given_the_loops_step(latents, tmp_path):
    trainer = Trainer(tiny_config(latents, tmp_path / "run", steps=3, grad_accum=2), progress=False)
    trainer.method = _RecordsSteps(trainer.method)
    trainer.run()
    assert trainer.method.steps == [0, 0, 1, 1, 2, 2]


def test_ema_warmup_forgets_the_initial_weights_fast(latents, tmp_path):
    cfg = tiny_config(latents, tmp_path / "run", steps=1, ema_decay=0.99, ema_warmup=True)
    trainer = Trainer(cfg, progress=False)
    init = trainer.ema.state_dict()
    trainer.run()
    live = {k: v.detach() for k, v in trainer.model.named_parameters()}
    exported = load_denoiser(tmp_path / "run").state_dict()
    moved = 0
    for k, p in init.items():  # the first update decays by min(0.99, 1 / 10): 0.1 of the init is left
        assert torch.allclose(exported[k], p + 0.9 * (live[k] - p), atol=1e-6), k
        moved += not torch.equal(p, live[k])
    assert moved


def test_the_log_counts_each_samples_latent_tokens(latents, tmp_path):
    train(tiny_config(latents, tmp_path / "run", steps=2), progress=False)
    rows = [r for r in read_log(tmp_path / "run") if "loss" in r]
    # latents [16, 3, 6, 8]: 3 frames of 3 x 4 patches of 2 x 2
    assert rows and all(r["tokens_per_s"] / r["samples_per_s"] == pytest.approx(36) for r in rows)


def test_a_checkpoint_records_the_samples_seen(latents, tmp_path):
    train(tiny_config(latents, tmp_path / "run", steps=3, checkpoint_every=3, batch_size=4), progress=False)
    newest = checkpoint_files(tmp_path / "run" / "checkpoints")[-1]
    assert newest.name == "step-0000003.pt"
    assert torch.load(newest, weights_only=True)["samples_seen"] == 12


@pytest.mark.parametrize("checkpoint_every", [1, 100])
def test_evaluation_runs_every_n_steps_and_at_the_end_and_only_then(latents, tmp_path, checkpoint_every):
    # every 2 of 3 steps: at 2 and at the end (3), whether or not a checkpoint falls there; never at 1
    e = EvalConfig(every=2, prompts=1, steps=1)
    cfg = tiny_config(latents, tmp_path / "run", steps=3, checkpoint_every=checkpoint_every, eval=e)
    train(cfg, progress=False)
    samples = sorted(p.name for p in (tmp_path / "run" / "samples").iterdir())
    assert samples == ["step-0000002", "step-0000003"]
    assert [r["step"] for r in read_log(tmp_path / "run") if "eval_micro_score" in r] == [2, 3]
    names = [p.name for p in checkpoint_files(tmp_path / "run" / "checkpoints")]
    assert names == ["step-0000002.pt", "step-0000003.pt"]  # an evaluation step is a checkpoint too


def test_the_pipeline_records_the_evaluation_settings_and_the_chosen_vae(latents, tmp_path):
    other_vae = tmp_path / "other_vae"
    other_vae.mkdir()
    e = EvalConfig(every=0, steps=7, cfg=2.5, shift=1.5)
    cfg = tiny_config(latents, tmp_path / "run", steps=2, eval=e, vae=str(other_vae))
    train(cfg, progress=False)
    info = read_pipeline(tmp_path / "run")
    assert (info.steps, info.cfg, info.shift) == (7, 2.5, 1.5)  # the evaluation's, not the training's
    assert info.vae == str(other_vae)  # vae: overrides the one that encoded the latents


def test_swap_gaps_are_the_ema_models_on_held_out_and_on_training_clips(latents, tmp_path):
    from s2dit.latent.text import load_text_encoder
    from s2dit.train.caption_swap import CaptionSwap

    cfg = tiny_config(latents, tmp_path / "run", "wan", steps=1, checkpoint_every=1, ema_decay=0.5)
    cfg.eval.swap_clips = 2
    train(cfg, progress=False)
    row = next(r for r in read_log(tmp_path / "run") if "swap_gap_color" in r)
    data = LatentBatches(str(latents), 32, 4, cfg.seed)
    encoder = load_text_encoder("minilm", 128)
    ema = load_denoiser(tmp_path / "run")  # the exported EMA weights
    for prefix, clips in (("swap_gap", data.holdout[:2]), ("swap_gap_train", [0, 1])):
        want = CaptionSwap(data, clips, encoder, 32).gaps(ema)
        for attr, gap in want.items():
            assert row[f"{prefix}_{attr}"] == pytest.approx(gap, rel=1e-4, abs=1e-7), (prefix, attr)


def test_evaluation_samples_the_ema_weights_with_the_runs_noise(latents, tmp_path):
    from s2dit.train.evaluate import evaluate_heldout

    e = EvalConfig(every=2, prompts=1, steps=2)
    cfg = tiny_config(latents, tmp_path / "run", steps=2, eval=e, ema_decay=0.5, noise_correlation=0.6)
    train(cfg, progress=False)
    got = torch.load(tmp_path / "run" / "samples" / "step-0000002" / "latents.pt", weights_only=True)
    data = LatentBatches(str(latents), 32, 4, cfg.seed)
    model = load_denoiser(tmp_path / "run")  # the exported EMA weights
    evaluate_heldout(model, data, e, None, tmp_path / "ref", 8.0, torch.device("cpu"), noise_correlation=0.6)
    want = torch.load(tmp_path / "ref" / "latents.pt", weights_only=True)
    assert torch.allclose(got, want, atol=1e-5)


def test_a_resumed_run_may_change_its_evaluation_settings(latents, tmp_path):
    cfg = tiny_config(latents, tmp_path / "run", steps=2, checkpoint_every=2)
    train(cfg, progress=False)
    again = dataclasses.replace(cfg, steps=3, eval=EvalConfig(every=0, prompts=1, steps=9, cfg=2.0))
    trainer = Trainer(again, progress=False)
    assert trainer.step == 2
    assert trainer.fit()["step"] == 3
    assert read_pipeline(tmp_path / "run").steps == 9

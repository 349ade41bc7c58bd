import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from train_fixtures import tiny_config

from s2dit.config import save_config
from s2dit.errors import S2DitError
from s2dit.model.denoiser import load_denoiser
from s2dit.train.checkpoint import checkpoint_files
from s2dit.train.config import EvalConfig, OptimConfig, TrainConfig
from s2dit.train.data import rank_positions
from s2dit.train.log import read_log
from s2dit.train.schedule import learning_rate
from s2dit.train.trainer import Trainer, train

BIN = os.path.dirname(sys.executable)


def losses(folder) -> list[float]:
    return [r["loss"] for r in read_log(folder) if "loss" in r]


@pytest.mark.parametrize("kind", ["s2dit", "wan"])
def test_overfitting_a_few_clips_lowers_the_loss(latents, tmp_path, kind):
    # 2 training clips (22 held out), no prompt dropout, a fixed noise level per clip draw.
    cfg = tiny_config(
        latents,
        tmp_path / "run",
        kind,
        steps=60,
        checkpoint_every=60,
        cfg_dropout=0.0,
        optim=OptimConfig(lr=3e-3, warmup_steps=5),
    )
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, holdout=22))
    train(cfg, progress=False)
    loss = losses(tmp_path / "run")
    assert len(loss) == 60
    first, last = sum(loss[:10]) / 10, sum(loss[-10:]) / 10
    assert last < 0.7 * first, (first, last)


def test_a_resumed_run_repeats_the_uninterrupted_loss_sequence(latents, tmp_path):
    whole = tiny_config(latents, tmp_path / "whole", steps=8, checkpoint_every=4, grad_accum=2)
    train(whole, progress=False)
    parts = dataclasses.replace(whole, out=str(tmp_path / "parts"))
    train(parts, max_steps=5, progress=False)  # checkpoints at 4 and 5
    assert [p.name for p in checkpoint_files(tmp_path / "parts" / "checkpoints")] == [
        "step-0000004.pt",
        "step-0000005.pt",
    ]
    train(parts, progress=False)
    assert losses(tmp_path / "parts") == losses(tmp_path / "whole")  # exact, float32 on the CPU
    a = load_denoiser(tmp_path / "whole").state_dict()
    b = load_denoiser(tmp_path / "parts").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_killed_run_resumes_exactly(latents, tmp_path):
    """A real SIGKILL mid-run (after the first checkpoint): the rerun's log equals an uninterrupted run's."""
    whole = tiny_config(latents, tmp_path / "whole", steps=12, checkpoint_every=3)
    train(whole, progress=False)
    killed = dataclasses.replace(whole, out=str(tmp_path / "killed"))
    save_config(killed, tmp_path / "killed.yaml")
    cmd = [f"{BIN}/s2dit", "train", "--config", str(tmp_path / "killed.yaml")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not checkpoint_files(tmp_path / "killed" / "checkpoints") and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = checkpoint_files(tmp_path / "killed" / "checkpoints")
    assert done and done[-1].name != "step-0000012.pt", "the run finished before it could be killed"
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert losses(tmp_path / "killed") == losses(tmp_path / "whole")


def test_a_truncated_checkpoint_is_a_clear_error_and_the_previous_one_stays(latents, tmp_path):
    cfg = tiny_config(latents, tmp_path / "run", steps=6, checkpoint_every=3)
    train(cfg, progress=False)
    files = checkpoint_files(tmp_path / "run" / "checkpoints")
    assert [f.name for f in files] == ["step-0000003.pt", "step-0000006.pt"]
    data = files[-1].read_bytes()
    files[-1].write_bytes(data[: len(data) // 2])
    with pytest.raises(S2DitError, match=r"step-0000006.pt is damaged.*step-0000003.pt, is intact"):
        Trainer(dataclasses.replace(cfg, steps=9), progress=False)
    assert files[0].is_file() and files[0].stat().st_size > 0
    files[-1].rename(tmp_path / "damaged.pt")  # as the message says: the run resumes from step 3
    trainer = Trainer(dataclasses.replace(cfg, steps=9), progress=False)
    assert trainer.step == 3


def test_other_settings_in_the_same_folder_are_refused(latents, tmp_path):
    cfg = tiny_config(latents, tmp_path / "run", steps=3)
    train(cfg, progress=False)
    with pytest.raises(S2DitError, match=r"other settings.*optim\.lr"):
        Trainer(dataclasses.replace(cfg, optim=OptimConfig(lr=5e-4, warmup_steps=2)), progress=False)


def test_batches_split_over_ranks_and_accumulation_without_overlap():
    seen = [p for r in range(2) for m in range(2) for p in rank_positions(3, m, 8, 2, r, 2)]
    assert sorted(seen) == list(range(24, 32))
    with pytest.raises(S2DitError, match="not divisible by grad_accum"):
        TrainConfig(batch_size=6, grad_accum=4)


def test_learning_rate_schedule():
    def lr_factor(step):  # the trainer's: the cosine starts after the warm-up
        return learning_rate(step, steps=110, warmup_steps=10, schedule="cosine", min_ratio=0.1)

    assert lr_factor(0) == pytest.approx(0.1) and lr_factor(9) == pytest.approx(1.0)
    assert lr_factor(10) == pytest.approx(1.0) and lr_factor(60) == pytest.approx(0.55)
    assert lr_factor(110) == pytest.approx(0.1)
    assert learning_rate(3, steps=110, warmup_steps=10, peak=2e-4) == pytest.approx(0.8e-4)  # constant


def test_evaluation_writes_videos_a_contact_sheet_and_scores(latents, tmp_path):
    cfg = tiny_config(latents, tmp_path / "run", steps=2, eval=EvalConfig(every=2, prompts=2, steps=2))
    row = train(cfg, progress=False)
    folder = tmp_path / "run" / "samples" / "step-0000002"
    assert {"000.mp4", "001.mp4", "contact_sheet.png", "prompts.jsonl", "scores.json", "latents.pt"} <= {
        p.name for p in folder.iterdir()
    }
    assert 0 <= row["eval_micro_score"] <= 1 and 0 <= row["eval_pass_rate"] <= 1
    assert read_log(tmp_path / "run")[-1]["eval_micro_score"] == row["eval_micro_score"]
    assert read_log(tmp_path / "run")[-1]["eval_pass_rate"] == row["eval_pass_rate"]
    scores = json.loads((folder / "scores.json").read_text())
    assert scores["pass_rate"] == row["eval_pass_rate"] and scores["mean_accuracy"] == row["eval_micro_score"]
    from s2dit.videoio import probe_video

    assert probe_video(folder / "000.mp4").frames == 9


@pytest.mark.slow
@pytest.mark.parametrize("parallel,kind", [("ddp", "s2dit"), ("fsdp", "s2dit"), ("fsdp", "wan")])
def test_two_processes_match_one_with_the_same_global_batch(latents, tmp_path, parallel, kind):
    """Real torchrun (gloo): loss and gradient norm per step, and the final weights, equal one process's."""
    runs = {}
    for nproc in (1, 2):
        cfg = tiny_config(latents, tmp_path / f"run{nproc}", kind, parallel=parallel, steps=3, grad_accum=2)
        save_config(cfg, tmp_path / f"run{nproc}.yaml")
        cmd = [
            f"{BIN}/torchrun",
            f"--nproc-per-node={nproc}",
            "--no-python",
            f"{BIN}/s2dit",
            "train",
            "--config",
            str(tmp_path / f"run{nproc}.yaml"),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[nproc] = read_log(tmp_path / f"run{nproc}")
    assert len(runs[1]) == len(runs[2]) == 3
    for one, two in zip(runs[1], runs[2], strict=True):
        assert one["loss"] == pytest.approx(two["loss"], rel=1e-5)
        assert one["grad_norm"] == pytest.approx(two["grad_norm"], rel=1e-5)
    a = load_denoiser(tmp_path / "run1").state_dict()
    b = load_denoiser(tmp_path / "run2").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.parametrize("kind", ["s2dit", "wan"])
def test_activation_checkpointing_changes_memory_not_results(latents, tmp_path, kind):
    runs = {}
    for ac in (False, True):
        cfg = tiny_config(latents, tmp_path / f"ac{ac}", kind, steps=2, activation_checkpointing=ac)
        train(cfg, progress=False)
        runs[ac] = read_log(tmp_path / f"ac{ac}")
    for a, b in zip(runs[False], runs[True], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)


def test_the_exported_model_holds_the_ema_weights(latents, tmp_path):
    cfg = tiny_config(latents, tmp_path / "run", steps=3, ema_decay=0.5)
    trainer = Trainer(cfg, progress=False)
    trainer.run()
    exported = load_denoiser(tmp_path / "run").state_dict()
    live = dict(trainer.model.named_parameters())
    ema = trainer.ema.state_dict()
    assert all(torch.equal(exported[k], ema[k]) for k in ema)
    assert any(not torch.equal(ema[k], live[k].detach()) for k in ema)  # the average lags the weights


def test_correlated_training_noise_reaches_the_loss_and_the_pipeline(latents, tmp_path):
    from s2dit.diffusion.pipeline import read_pipeline
    from s2dit.train.methods import build

    cfg = tiny_config(latents, tmp_path / "run", steps=1, noise_correlation=0.6)
    trainer = Trainer(cfg, progress=False)
    batch = trainer.data.batch(list(range(4)))
    noise = build(cfg).inputs(batch, trainer.data.null_text())["noise"]
    frames = noise.transpose(0, 2).reshape(noise.shape[2], -1)
    assert frames.shape[0] > 1
    assert float(torch.corrcoef(frames)[0, 1]) > 0.4  # 0.6 drawn; independent frames give ~0
    trainer.run()
    assert read_pipeline(tmp_path / "run").noise_correlation == 0.6
    with pytest.raises(S2DitError, match=r"^noise_correlation: 1.0 must lie in \[0, 1\)$"):
        dataclasses.replace(cfg, noise_correlation=1.0)


def test_max_seconds_stops_with_a_checkpoint_and_the_run_resumes(latents, tmp_path):
    from s2dit.train import checkpoint

    cfg = tiny_config(latents, tmp_path / "timed", steps=50, checkpoint_every=100)
    row = train(cfg, progress=False, max_seconds=1e-9)  # out of time after the first step
    assert row["step"] == 1
    assert [p.name for p in checkpoint.checkpoint_files(tmp_path / "timed" / "checkpoints")] == [
        "step-0000001.pt"
    ]
    assert train(cfg, progress=False, max_steps=3)["step"] == 3


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch ran-code",))


def test_a_crafted_checkpoint_is_refused_and_runs_no_code(latents, tmp_path, monkeypatch):
    cfg = tiny_config(latents, tmp_path / "run", steps=2, checkpoint_every=1)
    train(cfg, max_steps=1, progress=False)
    monkeypatch.chdir(tmp_path)
    newest = checkpoint_files(tmp_path / "run" / "checkpoints")[-1]
    torch.save({"step": 1, "evil": _RunsCode()}, newest)
    with pytest.raises(S2DitError, match="other than tensors and plain data"):
        train(cfg, progress=False)
    assert not (tmp_path / "ran-code").exists()

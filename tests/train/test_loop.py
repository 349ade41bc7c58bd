"""The one training loop (s2dit.train.loop), on a toy regression: what every s2dit training gets from it."""

import dataclasses
import json
import subprocess
import sys

import pytest
import torch
import yaml
from torch import nn

from s2dit.errors import S2DitError
from s2dit.train import checkpoint
from s2dit.train.loop import LoopSettings, TrainingLoop, single_process


@dataclasses.dataclass
class ToyConfig:
    out: str = ""
    steps: int = 6
    lr: float = 0.05
    seed: int = 0


class Toy(TrainingLoop):
    """Fit y = 3x on random batches drawn from the global generator (so a resume must restore it)."""

    def __init__(self, cfg: ToyConfig, accum: int = 1, **settings):
        self.cfg = cfg
        defaults = dict(grad_accum=accum, log_every=1, checkpoint_every=2)
        settings = LoopSettings(
            out=cfg.out,
            config=cfg,
            steps=cfg.steps,
            learning_rate=lambda step: cfg.lr / (1 + step),
            batch_size=4,
            **{**defaults, **settings},
        )
        super().__init__(settings, single_process(), progress=False)

    def build(self):
        torch.manual_seed(self.cfg.seed)
        model = nn.Linear(1, 1)
        return model, list(model.parameters())

    def loss(self, step, micro):
        x = torch.randn(4 // self.settings.grad_accum, 1)
        return (self.model(x) - 3 * x).square().mean(), {"micro": float(micro)}


def log_of(folder):
    return [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path):
    straight = Toy(ToyConfig(out=str(tmp_path / "a")))
    straight.fit()
    cut = ToyConfig(out=str(tmp_path / "b"))
    Toy(cut).fit(max_steps=3)  # checkpoints at 2 and at the stop, 3
    assert Toy(cut).fit(max_steps=3)["step"] == 3  # a rerun past its stop trains nothing
    resumed = Toy(cut)
    assert resumed.step == 3
    resumed.fit()
    assert [r["loss"] for r in log_of(tmp_path / "b")] == [r["loss"] for r in log_of(tmp_path / "a")]
    assert torch.equal(resumed.model.weight, straight.model.weight)
    rows = log_of(tmp_path / "a")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["lr"] for r in rows] == pytest.approx(
        [0.05 / (1 + s) for s in range(6)]
    )  # the rate each step used
    assert {"grad_norm", "samples_per_s"} <= set(rows[0]) and "tokens_per_s" not in rows[0]  # no tokens
    ckpts = sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir())
    assert ckpts == ["step-0000004.pt", "step-0000006.pt"]  # every checkpoint_every (2) steps, the newest 2


def test_the_learning_rate_follows_the_step_and_the_loss_is_averaged_over_accumulation(tmp_path):
    loop = Toy(ToyConfig(out=str(tmp_path / "acc")), accum=2)
    logs = loop.train_step()
    assert loop.optimizer.param_groups[0]["lr"] == 0.05 and loop.step == 1
    assert logs["micro"] == 1.0  # both accumulation steps ran; the last one's logs win
    loop.train_step()
    assert loop.optimizer.param_groups[0]["lr"] == pytest.approx(0.025)
    loop.close()


def test_a_checkpoint_with_the_optimizer_state_keyed_by_position_still_resumes(tmp_path):
    """The autoencoder and supernet trainings saved plain ``optimizer.state_dict()``s before the loop."""
    cfg = ToyConfig(out=str(tmp_path / "old"))
    loop = Toy(cfg)
    loop.train_step()
    payload = {
        "model": loop.model.state_dict(),
        "optimizer": loop.optimizer.state_dict(),  # keyed 0, 1
        "step": 1,
        "rng": checkpoint.rng_state(),
        "config": dataclasses.asdict(cfg),
    }
    checkpoint.save(tmp_path / "old" / "checkpoints", 1, payload, keep=2)
    expected = {k: v.clone() for k, v in loop.optimizer.state[loop.model.weight].items()}
    loop.close()
    again = Toy(cfg)
    assert again.step == 1 and torch.equal(again.model.weight, loop.model.weight)
    state = again.optimizer.state[again.model.weight]
    assert all(torch.equal(state[k], v) for k, v in expected.items())
    again.close()


def test_other_settings_and_a_second_process_are_refused(tmp_path):
    cfg = ToyConfig(out=str(tmp_path / "run"))
    Toy(cfg).fit(max_steps=2)
    with pytest.raises(S2DitError, match=r"/run holds a run with other settings \(lr: 0.05 -> 0.1\)"):
        Toy(dataclasses.replace(cfg, lr=0.1))
    moved = tmp_path / "moved"
    (tmp_path / "run").rename(moved)
    assert Toy(dataclasses.replace(cfg, out=str(moved))).step == 2  # where it lives may change


def test_a_trainer_checkpoint_from_before_the_shared_loop_resumes(tmp_path):
    """Those were written while a LambdaLR drove the rate: their param groups carry its ``initial_lr``."""
    cfg = ToyConfig(out=str(tmp_path / "lambda"))
    loop = Toy(cfg)
    torch.optim.lr_scheduler.LambdaLR(loop.optimizer, lambda s: 1.0)  # adds initial_lr to the groups
    loop.train_step()
    model_state, optim_state = checkpoint.full_state(loop.model, loop.optimizer, loop.world)
    assert "initial_lr" in optim_state["param_groups"][0]
    payload = {"model": model_state, "optimizer": optim_state, "step": 1, "rng": checkpoint.rng_state()}
    payload |= {"config": dataclasses.asdict(cfg), "scheduler": {"last_epoch": 1}}
    checkpoint.save(tmp_path / "lambda" / "checkpoints", 1, payload, keep=2)
    loop.close()
    again = Toy(cfg)
    assert again.step == 1 and "initial_lr" not in again.optimizer.param_groups[0]
    assert torch.equal(
        again.optimizer.state[again.model.weight]["exp_avg"], optim_state["state"]["weight"]["exp_avg"]
    )
    again.close()


def test_accumulation_averages_the_micro_batches(tmp_path):
    """Two accumulation steps of 2 samples are one step of the same 4 samples: same loss, same update."""
    whole, halves = (
        Toy(ToyConfig(out=str(tmp_path / "whole"))),
        Toy(ToyConfig(out=str(tmp_path / "halves")), 2),
    )
    torch.manual_seed(5)
    x = torch.randn(4, 1)
    with torch.no_grad():
        expected = float((whole.model(x) - 3 * x).square().mean())
    w0 = whole.model.weight.detach().clone()
    torch.manual_seed(5)
    a = whole.train_step()
    assert a["loss"] == pytest.approx(expected)  # the loss of the step's batch, before the update
    # Adam's first step moves each weight by the rate (no weight decay unless asked for).
    assert (whole.model.weight - w0).abs().item() == pytest.approx(0.05, abs=1e-6)
    torch.manual_seed(5)
    b = halves.train_step()
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6) and a["grad_norm"] == pytest.approx(b["grad_norm"])
    assert torch.allclose(whole.model.weight, halves.model.weight, atol=1e-7)
    whole.close(), halves.close()


def test_gradients_are_clipped_and_the_norm_before_clipping_is_logged(tmp_path):
    free = Toy(ToyConfig(out=str(tmp_path / "a")), grad_clip=0)
    w0 = free.model.weight.detach().clone()
    clipped = Toy(ToyConfig(out=str(tmp_path / "b")), grad_clip=1e-3)
    norms = []
    for _ in range(3):
        torch.manual_seed(1)
        a = free.train_step()
        torch.manual_seed(1)
        norms.append((a["grad_norm"], clipped.train_step()["grad_norm"]))
    assert norms[0][0] == pytest.approx(norms[0][1]) and norms[0][1] > 1e-2  # logged before clipping
    assert not torch.equal(free.model.weight, w0)  # grad_clip 0: no clipping (not a clip to 0)
    assert not torch.allclose(free.model.weight, clipped.model.weight)  # Adam sees the clipped scale change
    free.close(), clipped.close()


class Skipping(Toy):
    """No loss on odd steps, a row of its own at each checkpoint, an extra checkpoint at step 3, 10 tokens."""

    def loss(self, step, micro):
        return (None, {"skipped": 1.0}) if step % 2 else super().loss(step, micro)

    def checkpoint_due(self, step):
        return step == 3

    def at_checkpoint(self, model_state):
        assert set(model_state) == {"weight", "bias"}
        return [{"checked": float(self.step)}]

    def tokens_per_sample(self):
        return 10


def test_steps_without_a_loss_checkpoint_rows_and_the_logged_throughput(tmp_path):
    loop = Skipping(ToyConfig(out=str(tmp_path / "run"), steps=5), log_every=2)
    row = loop.fit()
    rows = log_of(tmp_path / "run")
    steps = [r["step"] for r in rows]
    assert steps == [2, 2, 3, 4, 4, 5, 5]  # logs every 2 steps and at the end; checkpoints at 2, 3, 4, 5
    logged = [r for r in rows if "lr" in r]
    assert [r["step"] for r in logged] == [2, 4, 5]
    assert [r.get("skipped") for r in logged] == [1.0, 1.0, None]  # each window's own steps only
    assert all(r["tokens_per_s"] == pytest.approx(10 * r["samples_per_s"]) for r in logged)
    assert [r["checked"] for r in rows if "checked" in r] == [2.0, 3.0, 4.0, 5.0]
    assert row["step"] == 5 and row["checked"] == 5.0 and "samples_per_s" in row  # the last rows, merged
    files = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert files == ["step-0000004.pt", "step-0000005.pt"]  # the newest keep_checkpoints (2)


def test_a_skipped_step_leaves_the_model_as_it_is(tmp_path):
    loop = Skipping(ToyConfig(out=str(tmp_path / "run")))
    loop.train_step()
    before = loop.model.weight.detach().clone()
    logs = loop.train_step()  # step 1: no loss
    assert logs == {"skipped": 1.0} and loop.step == 2 and torch.equal(loop.model.weight, before)
    loop.close()


def test_max_seconds_stops_at_the_next_step_with_a_checkpoint(tmp_path):
    loop = Toy(ToyConfig(out=str(tmp_path / "run"), steps=50), checkpoint_every=100)
    row = loop.fit(max_seconds=0)
    assert row["step"] == loop.step == 1
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step-0000001.pt"]
    assert Toy(ToyConfig(out=str(tmp_path / "run"), steps=50)).fit(max_seconds=3600)["step"] == 50


def test_the_run_folder_holds_the_config_and_the_log_only(tmp_path):
    cfg = ToyConfig(out=str(tmp_path / "deep" / "run"))  # parents are made
    Toy(cfg).fit(max_steps=1)
    run = tmp_path / "deep" / "run"
    assert sorted(p.name for p in run.iterdir()) == [".lock", "checkpoints", "config.yaml", "train_log.jsonl"]
    assert yaml.safe_load((run / "config.yaml").read_text()) == dataclasses.asdict(cfg)


def test_a_folder_of_an_older_format_is_refused(tmp_path):
    (tmp_path / "toy.pt").write_bytes(b"")
    with pytest.raises(S2DitError, match=r"older format \(toy\.pt\)"):
        Toy(ToyConfig(out=str(tmp_path)), old_formats=("toy.pt",))


HOLD = """
import sys, time
from s2dit.lock import FolderLock
try:
    FolderLock(sys.argv[1]).acquire()
except Exception:
    print("refused", flush=True)
else:
    print("held", flush=True)
"""


def test_the_folder_is_locked_while_the_run_lives_and_released_by_close(tmp_path):
    def other_process():
        run = subprocess.run([sys.executable, "-c", HOLD, str(tmp_path)], capture_output=True, text=True)
        return run.stdout.strip()

    loop = Toy(ToyConfig(out=str(tmp_path)))
    assert other_process() == "refused"
    loop.close()
    assert other_process() == "held"
    loop.close()  # a second close does nothing


def test_samples_per_second_is_the_window_over_its_time(tmp_path, monkeypatch):
    """A clock that advances 0.5 s per reading: each one-step window of 4 samples took 0.5 s."""
    import s2dit.train.loop as loop_module

    clock = iter(0.5 * i for i in range(1000))
    monkeypatch.setattr(loop_module.time, "perf_counter", lambda: next(clock))
    Toy(ToyConfig(out=str(tmp_path), steps=3), checkpoint_every=100).fit()
    assert [r["samples_per_s"] for r in log_of(tmp_path)] == [8.0, 8.0, 8.0]

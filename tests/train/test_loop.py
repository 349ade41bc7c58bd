"""The one training loop (s2dit.train.loop), on a toy regression: what every s2dit training gets from it."""

import dataclasses
import json

import pytest
import torch
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

    def __init__(self, cfg: ToyConfig, accum: int = 1):
        self.cfg = cfg
        settings = LoopSettings(
            out=cfg.out,
            config=cfg,
            steps=cfg.steps,
            learning_rate=lambda step: cfg.lr / (1 + step),
            batch_size=4,
            grad_accum=accum,
            log_every=1,
            checkpoint_every=2,
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
    assert {"grad_norm", "samples_per_s"} <= set(rows[0])


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
    with pytest.raises(S2DitError, match=r"other settings \(lr: 0.05 -> 0.1\)"):
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

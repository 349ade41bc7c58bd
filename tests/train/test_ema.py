"""The EMA follows ``ema ← d·ema + (1 - d)·θ`` with the decay the config asks for, in the trainer too.
Decay 0.9, not 0.5: at 0.5 a swapped ``d`` and ``1 - d`` give the same numbers."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from train_fixtures import tiny_config

from s2dit.train.ema import EMA
from s2dit.train.trainer import Trainer


def linear(value: float) -> torch.nn.Linear:
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(value)
    return model


def test_ema_moves_a_tenth_of_the_way_per_update_at_decay_0_9():
    model = linear(0.0)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    for k in range(1, 6):
        ema.update(model)
        assert ema.params[0].item() == pytest.approx(1 - 0.9**k, rel=1e-6)  # 0.1, 0.19, 0.271, ...
    assert model.weight.item() == 1.0  # the live weights are left alone


def test_ema_state_and_counters_round_trip():
    model = linear(0.0)
    ema = EMA(model, decay=0.9, warmup=True)
    with torch.no_grad():
        model.weight.fill_(1.0)
    for _ in range(3):
        ema.update(model)
    again = EMA(linear(5.0), decay=0.9, warmup=True)
    again.load_state_dict(ema.state_dict())
    again.load_counters(ema.counters())
    assert again.updates == 3 and again.current_decay() == ema.current_decay() == pytest.approx(4 / 13)
    ema.update(model)
    again.update(model)
    assert again.params[0].item() == pytest.approx(ema.params[0].item())
    again.load_counters({})  # a checkpoint from before the counter: the warm-up starts again
    assert again.updates == 0 and again.current_decay() == pytest.approx(0.1)


def test_the_trainer_updates_the_ema_after_every_step(latents, tmp_path):
    cfg = dataclasses.replace(tiny_config(latents, tmp_path / "run", steps=2), ema_decay=0.9)
    trainer = Trainer(cfg, progress=False)
    expected = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}  # the EMA starts here
    for _ in range(2):
        trainer.train_step()
        for n, p in trainer.model.named_parameters():
            expected[n] = 0.9 * expected[n] + 0.1 * p.detach()
    ema = trainer.ema.state_dict()
    live = dict(trainer.model.named_parameters())
    assert all(torch.allclose(ema[n], expected[n], atol=1e-6) for n in expected)
    assert any(not torch.allclose(ema[n], live[n].detach(), atol=1e-4) for n in expected)  # it lags
    trainer.close()

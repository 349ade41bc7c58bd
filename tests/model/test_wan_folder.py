"""The Wan teacher's ``model/`` folder is replaced whole: a save killed (here: failing) mid-way leaves the
previous folder loadable and unchanged, and our files beside the weights (``pipeline.yaml``) are kept."""

from __future__ import annotations

import pytest
import torch

from s2dit.model.denoiser import load_denoiser, save_denoiser
from s2dit.model.wan import WanConfig, WanDenoiser

TINY = WanConfig(layers=1, heads=2, head_dim=12, ffn_dim=32, text_dim=16, freq_dim=32)


def tiny_wan(seed: int) -> WanDenoiser:
    torch.manual_seed(seed)
    model = WanDenoiser.from_config(TINY).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.05)
    return model


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_save_that_dies_mid_way_leaves_the_old_folder(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    first, second = tiny_wan(0), tiny_wan(1)
    save_denoiser(first, folder)
    (folder / "pipeline.yaml").write_text("sampler: unipc\n")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    real = type(second.transformer).save_pretrained

    def dies_after_the_weights(self, target, **kw):
        real(self, target, **kw)
        (target / "config.json").write_text("{")  # torn
        raise KeyboardInterrupt  # killed before the folder was complete

    monkeypatch.setattr(type(second.transformer), "save_pretrained", dies_after_the_weights)
    with pytest.raises(KeyboardInterrupt):
        save_denoiser(second, folder)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert same_weights(load_denoiser(folder), first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary left behind

    save_denoiser(second, folder, second.state_dict())  # the trainer's call (EMA weights)
    assert same_weights(load_denoiser(folder), second)
    assert (folder / "pipeline.yaml").read_text() == "sampler: unipc\n"  # carried over
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_stale_sharded_weights_do_not_survive_a_new_save(tmp_path):
    folder = tmp_path / "model"
    save_denoiser(tiny_wan(0), folder)
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text('{"weight_map": {"x": "gone"}}')
    save_denoiser(tiny_wan(1), folder)
    assert not (folder / "diffusion_pytorch_model.safetensors.index.json").exists()
    assert same_weights(load_denoiser(folder), tiny_wan(1))

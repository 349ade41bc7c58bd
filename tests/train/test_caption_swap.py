"""Caption-swap loss gaps: the swapped captions change exactly one attribute, a text-blind model has no
gap, and the trainer logs the gaps at its checkpoints."""

import numpy as np
import pytest
import torch
from train_fixtures import tiny_config

from s2dit.config import VideoSpec
from s2dit.data.micro.captions import parse_caption, write_caption
from s2dit.data.micro.scene import clip_rng, sample_scene
from s2dit.data.micro.vocab import motion_family
from s2dit.train.caption_swap import ATTRIBUTES, CaptionSwap, _scene, swap_captions, swapped_objects
from s2dit.train.data import LatentBatches
from s2dit.train.log import read_log
from s2dit.train.trainer import train


def _row(i: int) -> dict:
    scene = sample_scene(clip_rng(7, i), VideoSpec())
    objects = [
        {"color": o.color, "shape": o.shape, "size": o.size, "motion": o.motion} for o in scene.objects
    ]
    return {"background": scene.background, "objects": objects}


@pytest.mark.parametrize("i", range(12))
def test_each_swap_changes_one_attribute_of_the_caption(i):
    row = _row(i)
    captions = swap_captions(row, seed=i)
    truth = parse_caption(captions["true"])["objects"]
    assert [o["color"] for o in truth] == [o["color"] for o in row["objects"]]
    for attribute in ATTRIBUTES:
        parsed = parse_caption(captions[attribute])["objects"]
        want = swapped_objects(row["objects"], attribute)
        assert len(parsed) == len(want)
        for got, obj in zip(parsed, want, strict=True):
            assert (got["color"], got["shape"], got["size"]) == (obj["color"], obj["shape"], obj["size"])
            assert motion_family(got["motion"]) == motion_family(obj["motion"])
        if attribute != "count":
            first, orig = want[0], row["objects"][0]
            changed = {k for k in ("color", "shape", "size", "motion") if first[k] != orig[k]}
            assert changed == {attribute}


def test_swapped_captions_reuse_the_wording_of_the_true_one():
    row = _row(3)
    row["objects"] = row["objects"][:1]
    captions = swap_captions(row, seed=0)
    same = write_caption(np.random.default_rng(0), _scene(row["background"], row["objects"]))
    assert captions["true"] == same
    words_true, words_color = captions["true"].split(), captions["color"].split()
    assert len(words_true) == len(words_color)
    assert sum(a != b for a, b in zip(words_true, words_color, strict=True)) == 1


class _Words:
    """A stand-in text encoder: a fixed random embedding per word (what matters here is that swapped
    captions get other embeddings)."""

    def encode(self, prompts):
        rows = []
        for p in prompts:
            words = p.lower().split()[:16]
            rows.append(
                torch.stack(
                    [torch.randn(8, generator=torch.Generator().manual_seed(hash(w) % 2**31)) for w in words]
                )
            )
        L = max(len(r) for r in rows)
        tokens = torch.zeros(len(rows), L, 8)
        mask = torch.zeros(len(rows), L, dtype=torch.bool)
        for i, r in enumerate(rows):
            tokens[i, : len(r)], mask[i, : len(r)] = r, True
        return tokens, mask


def test_a_text_blind_model_has_no_gap_and_a_text_reading_one_has(latents):
    data = LatentBatches(str(latents), 16, 4, 0)
    swap = CaptionSwap(data, [0, 1, 2], _Words(), 16)

    def blind(x, t, text, mask):
        return torch.zeros_like(x)

    def reading(x, t, text, mask):
        return torch.zeros_like(x) + text.sum(dim=(1, 2))[:, None, None, None, None]

    assert all(g == 0.0 for g in swap.gaps(blind).values())
    gaps = swap.gaps(reading)
    assert set(gaps) == set(ATTRIBUTES) and all(g != 0.0 for g in gaps.values())


def test_the_trainer_logs_swap_gaps_at_checkpoints(latents, tmp_path):
    cfg = tiny_config(latents, tmp_path / "run", "wan", steps=2, checkpoint_every=1)
    cfg.eval.swap_clips = 2
    train(cfg, progress=False)
    rows = [r for r in read_log(tmp_path / "run") if "swap_gap_color" in r]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(
        np.isfinite(r[f"{p}_{a}"]) for r in rows for p in ("swap_gap", "swap_gap_train") for a in ATTRIBUTES
    )

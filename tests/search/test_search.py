"""Latency tables (validation, interpolation), quality files, the supernet, and the search commands."""

import copy
import dataclasses
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from s2dit.errors import S2DitError
from s2dit.search.latency import LatencyTable, validate
from s2dit.search.supernet import Supernet, SupernetConfig, validate_quality
from s2dit.search.sweep import build_problem, reference_layouts

BIN = os.path.dirname(sys.executable)


def table_dict() -> dict:
    entries = []
    for tokens, scale in ((256, 1.0), (1024, 4.0)):
        for kind, ms in (("L", 2.0), ("S", 0.5), ("F", 3.0), ("stage_down", 0.1), ("stage_up", 0.2)):
            entries.append({"kind": kind, "tokens": tokens, "pass": "forward", "ms": ms * scale})
    return {
        "schema": "s2dit.latency/1",
        "device": "test",
        "dtype": "float32",
        "width": 32,
        "heads": 2,
        "ffn_dim": 64,
        "entries": entries,
    }


def quality_dict(depth: int = 6, kinds: str = "LSF") -> dict:
    scores = [
        {k: 0.01 * (i + 1) * (1 if k == "L" else -1 if k == "S" else 2) for k in kinds} for i in range(depth)
    ]
    return {"schema": "s2dit.quality/1", "kinds": kinds, "depth": depth, "scores": scores}


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d.update(schema="other/1"), "schema"),
        (lambda d: d.update(width="wide"), "width"),
        (lambda d: d.pop("device"), "device"),
        (lambda d: d.update(entries=[]), "entries"),
        (lambda d: d["entries"][3].update(ms=-1), r"entries\[3\]\.ms"),
        (lambda d: d["entries"][2].update(tokens=1.5), r"entries\[2\]\.tokens"),
        (lambda d: d["entries"][0].pop("kind"), r"entries\[0\]\.kind"),
        (lambda d: d["entries"][1].update({"pass": None}), r"entries\[1\]\.pass"),
        (lambda d: d["entries"][4].update(ms=1e308), r"entries\[4\]\.ms"),  # sums overflow to inf
        (lambda d: d["entries"][4].update(ms=math.nan), r"entries\[4\]\.ms"),
        (lambda d: d["entries"].append(dict(d["entries"][2])), r"entries\[10\]: measures .*entries\[2\]"),
    ],
)
def test_latency_schema_errors_name_the_bad_field(edit, field):
    data = copy.deepcopy(table_dict())
    edit(data)
    with pytest.raises(S2DitError, match=field):
        validate(data)


def test_latency_table_interpolates_between_measured_sizes():
    table = LatencyTable(table_dict())
    assert table.cost("L", 256) == 2.0 and table.cost("L", 1024) == 8.0
    assert table.cost("L", 512) == pytest.approx(4.0)  # a power law between neighbours (here linear)
    with pytest.raises(S2DitError, match="outside the latency table's measured range"):
        table.cost("L", 4096)
    parts = table.layout_latency("LSSLSF", 256)
    assert parts["stages"] == pytest.approx(2 * 0.3) and parts["total"] == pytest.approx(
        2 * 2 + 3 * 0.5 + 3 + 0.6
    )
    missing = table_dict()
    missing["entries"] = [e for e in missing["entries"] if e["kind"] != "stage_up"]
    with pytest.raises(S2DitError, match="stage_up"):
        LatencyTable(missing)


def test_quality_schema_errors_name_the_bad_field():
    bad = quality_dict()
    bad["scores"][2]["S"] = "high"
    with pytest.raises(S2DitError, match=r"scores\[2\]\.S"):
        validate_quality(bad)
    with pytest.raises(S2DitError, match="depth 8"):
        validate_quality(quality_dict(), depth=8)
    with pytest.raises(S2DitError, match="schema"):
        validate_quality({"schema": "x"})


def test_problem_uses_the_table_and_the_scores():
    problem = build_problem(LatencyTable(table_dict()), quality_dict(), 6, 512, "LS")
    assert problem.cost[0]["L"] == pytest.approx(4.0) and problem.enter_ms == pytest.approx(0.2)
    assert problem.params[0]["L"] > problem.params[0]["S"] > 0  # L has its feature map, conv and gate
    assert problem.stage_params > 0
    refs = reference_layouts(6, "LSF")
    assert (
        refs["all-F"] == "FFFFFF"
        and refs["all-L"] == "LLLLLL"
        and any(r.startswith("sandwich") for r in refs)
    )


def test_supernet_routes_each_layout_through_its_own_blocks():
    cfg = SupernetConfig(latents="x", depth=4, kinds="LSF", width=32, heads=2, ffn_dim=64, text_dim=12)
    torch.manual_seed(0)
    net = Supernet(cfg)
    x, t, text = torch.randn(1, 16, 2, 12, 20), torch.full((1, 2), 500.0), torch.randn(1, 3, 12)
    with torch.no_grad():
        for p in net.parameters():  # move off adaLN-Zero so every block carries signal
            p.add_(0.05 * torch.randn_like(p))
    outs = {lay: net.select(lay)(x, t, text) for lay in ("LSSF", "LSSL", "FSSF")}
    assert not torch.allclose(outs["LSSF"], outs["LSSL"]) and not torch.allclose(outs["LSSF"], outs["FSSF"])
    again = net.select("LSSF")(x, t, text)
    assert torch.equal(again, outs["LSSF"])
    # a loss through one layout reaches only that layout's blocks and stage modules
    net.zero_grad()
    net.select("LSSL")(x, t, text).square().mean().backward()
    used = lambda m: any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())  # noqa: E731
    assert used(net.bank[0]["L"]) and used(net.bank[1]["S"]) and used(net.bank[3]["L"])
    assert not used(net.bank[0]["S"]) and not used(net.bank[3]["F"])
    assert used(net.down[1]) and used(net.up[2]) and not used(net.down[0])


class PenaltyNet:
    """A stand-in supernet whose held-out loss is known: position i with kind k adds ``penalty[i][k]``."""

    def __init__(self, penalty: list[dict[str, float]]):
        self.penalty = penalty

    def eval(self):
        return self

    def train(self):
        return self

    def select(self, layout: str):
        extra = sum(self.penalty[i][k] for i, k in enumerate(layout))

        def forward(x, t, text, mask):
            return self.inputs["noise"] - self.inputs["x0"] + math.sqrt(extra)  # loss = extra, exactly

        return forward


class FixedInputs:
    def __init__(self, net: PenaltyNet):
        g = torch.Generator().manual_seed(0)
        net.inputs = {
            "x0": torch.randn(2, 4, 2, 3, 3, generator=g),
            "noise": torch.randn(2, 4, 2, 3, 3, generator=g),
            "sigma": torch.full((2, 2), 0.5),
            "text": torch.zeros(2, 3, 8),
            "mask": torch.ones(2, 3, dtype=torch.bool),
        }
        self.net = net

    def inputs(self, batch, null):
        return self.net.inputs


class Clips:
    holdout, train_size = [0, 1], 2

    def clips(self, held):
        return {}


def test_supernet_scores_rank_the_lower_loss_kind_higher_and_the_search_picks_it():
    from s2dit.search.dp import solve_stable
    from s2dit.search.supernet import score_positions

    penalty = [{"L": 0.1, "S": 0.4}, {"L": 0.5, "S": 0.2}, {"L": 0.3, "S": 0.3}, {"L": 0.0, "S": 0.6}]
    cfg = SupernetConfig(latents="x", depth=4, kinds="LS", eval_clips=2, eval_layouts=3)
    net = PenaltyNet(penalty)
    scores, _ = score_positions(net, cfg, Clips(), FixedInputs(net), None, "cpu", progress=False)
    for i, row in enumerate(penalty):
        mean = sum(row.values()) / len(row)
        for k in "LS":  # the other positions' share is the same for every kind (shared layouts): it cancels
            assert scores[i][k] == pytest.approx(mean - row[k], abs=1e-5)  # higher: better
    assert scores[0]["L"] > scores[0]["S"] and scores[1]["S"] > scores[1]["L"]
    # what the search does with them: unlimited time buys the lowest-loss kind at every position
    # (position 2 ties; either is fine)
    quality = {"schema": "s2dit.quality/1", "kinds": "LS", "scores": scores}
    problem = build_problem(LatencyTable(table_dict()), quality, 4, 512, "LS")
    layout = solve_stable(problem, problem.latency("LLLL") + problem.latency("SSSS")).layout
    assert layout[0] == "L" and layout[1] == "S" and layout[3] == "L"


class HeldOut:
    """Six clips with padded prompts; remembers which clips the scoring asks for and the batch it gets."""

    def __init__(self, holdout: list[int], train_size: int):
        g = torch.Generator().manual_seed(0)
        self.holdout, self.train_size, self.asked = holdout, train_size, []
        self.latents = torch.randn(6, 16, 2, 12, 20, generator=g)
        self.text = torch.randn(6, 3, 12, generator=g)
        self.mask = torch.tensor([[True, True, False]] * 6)

    def clips(self, held):
        self.asked.append(list(held))
        self.batch = {"latents": self.latents[held], "text": self.text[held], "mask": self.mask[held]}
        return self.batch


def test_supernet_scores_each_kind_by_its_flow_matching_loss_on_the_held_out_clips():
    from s2dit.search.supernet import score_positions
    from s2dit.train.methods import FlowMatching

    cfg = SupernetConfig(
        latents="x", depth=1, kinds="LS", width=32, heads=2, ffn_dim=64, text_dim=12, eval_clips=2
    )
    torch.manual_seed(0)
    net = Supernet(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    method = FlowMatching(cfg.timesteps, cfg_dropout=0.0, seed=0)
    data = HeldOut(holdout=[4, 1, 3], train_size=3)
    scores, losses = score_positions(net, cfg, data, method, None, "cpu", progress=False)
    assert data.asked == [[4, 1]]  # the first eval_clips held-out clips
    for k in "LS":  # depth 1: the layout is the kind; the reference is the training's own loss on those clips
        expected, _ = method.loss(net.select(k), data.batch, None, torch.device("cpu"))
        assert losses[0][k] == pytest.approx(expected.item(), rel=1e-6)
    assert scores[0]["L"] == pytest.approx((losses[0]["S"] - losses[0]["L"]) / 2)
    empty = HeldOut(holdout=[], train_size=1)  # nothing held out: the training clips, as many as there are
    score_positions(net, cfg, empty, method, None, "cpu", progress=False)
    assert empty.asked == [[0]]


class RecordsLayouts:
    """A stand-in supernet that remembers every layout it is asked for; its velocity is exact up to a
    layout-dependent offset (a loss that is not a sum over positions)."""

    def __init__(self):
        self.layouts = []

    def eval(self):
        return self

    def train(self):
        return self

    def select(self, layout: str):
        self.layouts.append(layout)
        offset = 0.1 * len(layout) + 0.01 * layout.count("S") ** 2

        def forward(x, t, text, mask):
            return self.inputs["noise"] - self.inputs["x0"] + offset

        return forward


def test_every_scored_layout_is_a_whole_layout_with_the_kind_at_its_position():
    """From a hand mutation pass (docs/mutation-testing.md): a layout splice off by one scored shorter
    networks, and a loss that is a sum over positions cancelled it out."""
    from s2dit.search.supernet import score_positions

    cfg = SupernetConfig(latents="x", depth=4, kinds="LS", eval_clips=2, eval_layouts=3)
    net = RecordsLayouts()
    _, losses = score_positions(net, cfg, Clips(), FixedInputs(net), None, "cpu", progress=False)
    assert net.layouts and all(len(layout) == cfg.depth for layout in net.layouts), net.layouts
    for i in range(cfg.depth):
        for k in cfg.kinds:
            assert any(layout[i] == k for layout in net.layouts), (i, k)
            # each loss is over whole-depth layouts: the offset's length term is 0.4 (0.16 of the loss)
            assert losses[i][k] >= 0.4**2 - 1e-6


def test_supernet_training_resumes_and_refuses_other_settings(latents, tmp_path):
    from s2dit.search.supernet import train_supernet

    cfg = SupernetConfig(
        latents=str(latents),
        out=str(tmp_path / "sn"),
        depth=2,
        width=48,
        heads=2,
        ffn_dim=96,
        text_len=32,
        holdout=4,
        steps=2,
        batch_size=2,
        eval_clips=1,
        eval_layouts=1,
    )
    first = train_supernet(cfg, progress=False)
    assert [p.name for p in (tmp_path / "sn" / "checkpoints").iterdir()] == ["step-0000002.pt"]
    again = train_supernet(cfg, progress=False)  # resumes at the end: trains nothing, scores the same
    assert again["scores"] == first["scores"]
    with pytest.raises(S2DitError, match=r"sn holds a run with other settings \(lr: 0.0005 -> 0.001\)"):
        train_supernet(dataclasses.replace(cfg, lr=1e-3), progress=False)
    old = tmp_path / "old"
    old.mkdir()
    (old / "supernet.pt").write_bytes(b"")  # the format before checkpoints/step-N.pt
    with pytest.raises(S2DitError, match=r"older format \(supernet\.pt\)"):
        train_supernet(dataclasses.replace(cfg, out=str(old)), progress=False)


def test_an_interrupted_supernet_run_resumes_to_the_uninterrupted_result(latents, tmp_path):
    """Depth 4 with two kinds: after two steps some (position, kind) blocks have never been used, so they
    have no optimiser state; the resumed run must give them none either (Adam's first step differs)."""
    from s2dit.search.supernet import SupernetTraining

    cfg = SupernetConfig(
        latents=str(latents), out=str(tmp_path / "straight"), depth=4, width=48, heads=2, ffn_dim=96,
        text_len=32, holdout=4, steps=4, batch_size=2, eval_clips=1, eval_layouts=1, checkpoint_every=2,
    )  # fmt: skip
    straight = SupernetTraining(cfg, progress=False).fit()
    cut = dataclasses.replace(cfg, out=str(tmp_path / "cut"))
    first = SupernetTraining(cut, progress=False)
    first.fit(max_steps=2)
    used = {p for p in first.model.parameters() if p in first.optimizer.state}
    assert 0 < len(used) < len(list(first.model.parameters()))  # the case this test is about
    resumed = SupernetTraining(cut, progress=False)
    assert resumed.step == 2 and len(resumed.optimizer.state) == len(used)
    assert resumed.fit()["scores"] == straight["scores"]


@pytest.mark.slow
def test_supernet_sweep_and_layout_commands_end_to_end(latents, tmp_path):
    run = tmp_path / "sn"
    cmd = [f"{BIN}/s2dit", "search", "supernet", "--latents", str(latents), "--out", str(run), "--depth", "4"]
    cmd += ["--steps", "6", "--batch", "4", "--holdout", "4", "--eval-clips", "2", "--eval-layouts", "2"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    quality = json.loads((run / "quality.json").read_text())
    validate_quality(quality, depth=4, kinds="LS")
    assert quality["method"] == "supernet" and quality["made_with"]["config"]["steps"] == 6
    table = tmp_path / "latency.json"
    data = table_dict()
    data.update(width=192, heads=3, ffn_dim=768)
    table.write_text(json.dumps(data))
    common = [
        "--latency",
        str(table),
        "--quality",
        str(run / "quality.json"),
        "--depth",
        "4",
        "--tokens",
        "512",
    ]
    result = subprocess.run(
        [
            f"{BIN}/s2dit",
            "search",
            "sweep",
            *common,
            "--out",
            str(tmp_path / "sweep"),
            "--points",
            "6",
            "--reference",
            "LSLS",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    pareto = json.loads((tmp_path / "sweep" / "pareto.json").read_text())
    assert pareto["front"] and "all-L" in pareto["references"] and "given LSLS" in pareto["references"]
    assert (tmp_path / "sweep" / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    budget = str(pareto["front"][0]["latency_ms"] + 0.01)
    result = subprocess.run(
        [f"{BIN}/s2dit", "search", "layout", *common, "--budget-ms", budget], capture_output=True, text=True
    )
    assert result.returncode == 0 and pareto["front"][0]["layout"] in result.stdout, result.stderr
    result = subprocess.run(
        [f"{BIN}/s2dit", "search", "layout", *common, "--budget-ms", "0.5"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "no layout fits" in result.stderr
    for bad in ("nan", "inf", "-1"):
        result = subprocess.run(
            [f"{BIN}/s2dit", "search", "layout", *common, "--budget-ms", bad], capture_output=True, text=True
        )
        assert result.returncode == 2 and "--budget-ms must be positive and finite" in result.stderr, bad
        assert "Traceback" not in result.stderr


def test_predicted_latency_of_a_chosen_layout_counts_the_built_models_blocks():
    """The DP's objective, the table's prediction and the model built from the chosen layout agree on what
    is counted: each block once, at its own kind, and one entry and one exit per low-resolution stage, all
    at the requested token count. (Whether the table's milliseconds match a real forward is a timing
    question: ``s2dit bench blocks`` answers it, not a unit test.)"""
    import random

    from s2dit.model.config import ModelConfig
    from s2dit.model.transformer import S2DiT
    from s2dit.search.dp import solve_stable

    depth, tokens = 8, 512
    table = LatencyTable(table_dict())
    rng = random.Random(0)
    quality = {
        "schema": "s2dit.quality/1",
        "kinds": "LS",
        "scores": [{"L": rng.uniform(0, 1), "S": rng.uniform(0, 1)} for _ in range(depth)],
    }
    problem = build_problem(table, quality, depth, tokens, "LS")
    mid = (problem.latency("S" * depth) + problem.latency("L" * depth)) / 2
    layout = solve_stable(problem, mid).layout
    assert "S" in layout and "L" in layout and layout != "S" * depth
    predicted = table.layout_latency(layout, tokens)
    assert problem.latency(layout) == pytest.approx(predicted["total"])

    model = S2DiT(ModelConfig(layout=layout, width=32, heads=2, ffn_dim=64, text_dim=32))
    assert "".join(b.kind for b in model.blocks) == layout
    built = sum(table.cost(b.kind, tokens) for b in model.blocks)
    built += len(model.stage_down) * table.cost("stage_down", tokens)
    built += len(model.stage_up) * table.cost("stage_up", tokens)
    assert built == pytest.approx(predicted["total"])
    assert predicted["stages"] > 0 and predicted["total"] != pytest.approx(
        table.layout_latency(layout, 2 * tokens)["total"]
    )  # the table is read at the requested size

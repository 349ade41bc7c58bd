"""The supernet's scoring runs whole layouts (a hand mutation-testing pass, docs/mutation-testing.md)."""

import torch

from s2dit.search.supernet import SupernetConfig, score_positions


class _RecordsLayouts:
    """A stand-in supernet that remembers every layout it is asked for; its velocity is exact up to a
    layout-dependent offset (a loss that is not a sum over positions)."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.inputs = {
            "x0": torch.randn(2, 4, 2, 3, 3, generator=g),
            "noise": torch.randn(2, 4, 2, 3, 3, generator=g),
            "sigma": torch.full((2, 2), 0.5),
            "text": torch.zeros(2, 3, 8),
            "mask": torch.ones(2, 3, dtype=torch.bool),
        }
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


class _Method:
    def __init__(self, net):
        self.net = net

    def inputs(self, batch, null):
        return self.net.inputs


class _Clips:
    holdout, train_size = [0, 1], 2

    def clips(self, held):
        return {}


def test_every_scored_layout_is_a_whole_layout_with_the_kind_at_its_position():
    cfg = SupernetConfig(latents="x", depth=4, kinds="LS", eval_clips=2, eval_layouts=3)
    net = _RecordsLayouts()
    _, losses = score_positions(net, cfg, _Clips(), _Method(net), None, "cpu", progress=False)
    assert net.layouts and all(len(layout) == cfg.depth for layout in net.layouts), net.layouts
    for i in range(cfg.depth):
        for k in cfg.kinds:
            assert any(layout[i] == k for layout in net.layouts), (i, k)
            # each loss is over whole-depth layouts: the offset's length term is 0.4 (0.16 of the loss)
            assert losses[i][k] >= 0.4**2 - 1e-6

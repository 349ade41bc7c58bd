"""Stage A (cached KD) and the causal ODE stage: their targets, inputs and training, on a tiny cache."""

import pytest
import torch
from distill_fixtures import STREAM, distill_config, make_cache, make_teacher
from train_fixtures import TINY_S2DIT, tiny_config

import s2dit.distill.methods  # noqa: F401 - registers methods kd and causal_ode
from s2dit.diffusion.streaming import StreamSettings
from s2dit.distill.causal_ode import CausalODE, stream_level_indices
from s2dit.distill.kd import CachedKD
from s2dit.errors import ConfigError
from s2dit.model.denoiser import DenoiserSpec, build_denoiser, save_denoiser
from s2dit.train.config import OptimConfig
from s2dit.train.log import read_log
from s2dit.train.methods import FlowMatching
from s2dit.train.trainer import Trainer, train


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return make_teacher(tmp_path_factory.mktemp("teacher"))


@pytest.fixture(scope="module")
def cache(teacher, micro_world, tmp_path_factory):
    return make_cache(teacher, micro_world, tmp_path_factory.mktemp("c") / "cache")


def kd_config(latents, cache, out, **kw):
    return tiny_config(
        latents, out, method="kd", distill=distill_config(cache=str(cache)), cfg_dropout=0.0, **kw
    )


class Spy(torch.nn.Module):
    """A denoiser that records its inputs and predicts ``scale·x`` (by default a zero velocity)."""

    def __init__(self, scale: float = 0.0):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(scale))
        self.calls = []
        self.masks = []

    def forward(self, x, t, text, mask=None, chunk_frames=None):
        self.calls.append((x.clone(), t.clone(), chunk_frames))
        self.masks.append(mask)
        return x * self.w


def test_kd_targets_are_the_teachers_euler_velocity_and_final_latents(latents, cache):
    method = CachedKD(str(cache), 32, tiny_config(latents, "x").timesteps, seed=0, flow_weight=0.0)
    batch = method.data.batch([0, 1, 2])
    states, sigmas = batch["states"], batch["sigmas"]
    assert states.shape == (3, 3, 16, 3, 6, 8)
    full = [method.data.cache.read(method.data.index(p)) for p in (0, 1, 2)]
    for i, item in enumerate(full):  # the state, the one after it, and the final latents
        j = int(torch.nonzero(item["sigmas"] == sigmas[i, 0])[0])
        assert torch.equal(states[i, 0], item["states"][j]) and torch.equal(
            states[i, 1], item["states"][j + 1]
        )
        assert torch.equal(states[i, 2], item["states"][-1])
    spy = Spy()
    loss, _ = method.loss(spy, batch, None, torch.device("cpu"))
    target = (states[:, 1] - states[:, 0]) / (sigmas[:, 1] - sigmas[:, 0])[:, None, None, None, None]
    assert loss.item() == pytest.approx(target.square().mean().item(), rel=1e-5)  # zero prediction
    x, t, chunk = spy.calls[0]
    assert chunk is None and torch.equal(x[:3], states[:, 0])
    assert torch.allclose(t[:3], sigmas[:, :1].expand(-1, 3) * 1000)


def test_kd_loss_weighs_velocity_matching_and_flow_matching_on_the_final_latents(cache, tmp_path):
    timesteps = tiny_config(tmp_path, tmp_path / "x").timesteps
    method = CachedKD(str(cache), 32, timesteps, seed=0, velocity_weight=0.5, flow_weight=2.0)
    # each sample's draws follow its position in the data, not its place in the batch
    batch = method.data.batch([5, 2, 7])
    states, sigmas = batch["states"], batch["sigmas"]
    spy = Spy(scale=1.0)  # predicts its input: every error term keeps its sign
    loss, logged = method.loss(spy, batch, None, torch.device("cpu"))
    x, t, _ = spy.calls[0]
    # velocity matching at the cached state: dx/dσ along the teacher's trajectory
    target = (states[:, 1] - states[:, 0]) / (sigmas[:, 1] - sigmas[:, 0])[:, None, None, None, None]
    velocity = (states[:, 0] - target).square().mean().item()
    # flow matching: what the trainer's own flow matching makes of the final latents at the same positions
    reference = Spy(scale=1.0)
    final = {"latents": states[:, 2], "text": batch["text"], "mask": batch["mask"], "positions": [5, 2, 7]}
    flow = FlowMatching(timesteps, cfg_dropout=0.0, seed=0).loss(reference, final, None, torch.device("cpu"))
    flow = flow[0].item()
    fm_x, fm_t, _ = reference.calls[0]
    assert torch.equal(x[3:], fm_x) and torch.equal(t[3:], fm_t)
    assert logged["velocity_loss"] == pytest.approx(velocity, rel=1e-5)
    assert logged["flow_loss"] == pytest.approx(flow, rel=1e-5)
    assert loss.item() == pytest.approx(0.5 * velocity + 2.0 * flow, rel=1e-5)
    # both halves see the prompts' padding masked
    assert torch.equal(spy.masks[0], torch.cat([batch["mask"], batch["mask"]]))


def test_kd_trains_on_every_step_of_the_cached_trajectory(cache, tmp_path):
    method = CachedKD(str(cache), 32, tiny_config(tmp_path, tmp_path / "x").timesteps, seed=0)
    sigmas = method.data.sigmas
    picked = [method.levels(p, sigmas) for p in range(200)]
    assert {j for j, _, _ in picked} == set(range(len(sigmas) - 1))  # the last step too
    assert all(after == j + 1 and final == len(sigmas) - 1 for j, after, final in picked)
    # each draw follows the sample's position and the run's seed only, never the global generator: a
    # resumed run, or another split over processes, trains on the same states
    torch.manual_seed(123)
    assert [method.levels(p, sigmas) for p in range(200)] == picked
    other = CachedKD(str(cache), 32, method.timesteps, seed=1)
    assert [other.levels(p, sigmas) for p in range(200)] != picked


def test_kd_loss_decreases(latents, cache, tmp_path):
    cfg = kd_config(
        latents, cache, tmp_path / "kd", steps=30, log_every=5, optim=OptimConfig(lr=3e-3, warmup_steps=2)
    )
    train(cfg, progress=False)
    losses = [r["loss"] for r in read_log(tmp_path / "kd")]
    assert len(losses) == 6 and losses[-1] < 0.9 * losses[0]
    assert {"velocity_loss", "flow_loss"} <= set(read_log(tmp_path / "kd")[0])


def test_kd_student_from_a_same_shape_teacher_starts_at_its_loss(latents, cache, tmp_path):
    torch.manual_seed(1)
    source = build_denoiser(DenoiserSpec(kind="s2dit", s2dit=TINY_S2DIT))
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_denoiser(source, tmp_path / "s2dit_teacher")
    student = build_denoiser(
        DenoiserSpec(kind="s2dit", s2dit=TINY_S2DIT, init=str(tmp_path / "s2dit_teacher"))
    )
    fresh = build_denoiser(DenoiserSpec(kind="s2dit", s2dit=TINY_S2DIT))
    method = CachedKD(str(cache), 32, tiny_config(latents, "x").timesteps, seed=0)
    batch = method.data.batch(list(range(4)))
    with torch.no_grad():
        losses = [
            method.loss(m, batch, None, torch.device("cpu"))[0].item() for m in (source, student, fresh)
        ]
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)
    assert abs(losses[2] - losses[0]) > 1e-3


def test_causal_ode_puts_each_chunk_at_a_streaming_level(latents, cache):
    method = CausalODE(str(cache), 32, STREAM, seed=0)
    assert method.stream_levels == [0, 2, 4, 6]  # of the 9 states of an 8-step cache at the same shift
    batch = method.data.batch(list(range(6)))
    spy = Spy()
    method.loss(spy, batch, None, torch.device("cpu"))
    x, t, chunk = spy.calls[0]
    assert chunk == STREAM.chunk_frames == 1
    levels = torch.tensor(STREAM.sigmas) * 1000
    picked = set()
    for i in range(6):
        for f in range(3):  # each frame (a chunk of 1) is the cached state at its level
            k = int(torch.argmin((levels - t[i, f]).abs()))
            assert t[i, f] == pytest.approx(levels[k].item(), rel=1e-6)
            assert torch.equal(x[i, :, f], batch["states"][i, k, :, f])
            picked.add(k)
    assert len(picked) > 1  # the levels differ between chunks


def test_causal_ode_refuses_a_cache_without_the_streaming_levels(teacher, micro_world, tmp_path):
    other = make_cache(teacher, micro_world, tmp_path / "shift3", count=2, shift=3.0)
    with pytest.raises(ConfigError, match="lacks the streaming level"):
        CausalODE(str(other), 32, STREAM, seed=0)
    with pytest.raises(ConfigError, match="whole number"):
        CausalODE(str(other), 32, StreamSettings(steps=4, shift=3.0, chunk_frames=2), seed=0)
    assert stream_level_indices([1.0, 0.75, 0.5, 0.25, 0.0], StreamSettings(steps=4, shift=1.0)) == [
        0,
        1,
        2,
        3,
    ]


def test_causal_ode_trains_a_block_causal_student(latents, cache, tmp_path):
    cfg = tiny_config(
        latents,
        tmp_path / "ode",
        method="causal_ode",
        distill=distill_config(cache=str(cache)),
        steps=30,
        log_every=5,
    )
    trainer = Trainer(cfg, progress=False)
    trainer.run()
    losses = [r["loss"] for r in read_log(tmp_path / "ode")]
    assert losses[-1] < 0.7 * losses[0]
    from s2dit.diffusion.pipeline import read_pipeline

    assert read_pipeline(tmp_path / "ode").stream == STREAM  # the model streams with what it learnt


def test_distillation_methods_need_a_cache(latents, tmp_path):
    from s2dit.errors import S2DitError

    with pytest.raises(S2DitError, match=r"distill\.cache"):
        Trainer(tiny_config(latents, tmp_path / "x", method="kd"), progress=False)
    message = "method: 'consistency' must be one of flow_matching, kd, causal_ode, dmd"
    with pytest.raises(ConfigError, match=message):
        Trainer(tiny_config(latents, tmp_path / "x", method="consistency"), progress=False)


def test_every_method_is_registered_by_its_name(tmp_path):
    from s2dit.train import methods

    assert methods.names() == ("flow_matching", "kd", "causal_ode", "dmd")
    assert isinstance(methods.build(tiny_config(tmp_path, tmp_path / "x")), methods.FlowMatching)
    with pytest.raises(ValueError, match="twice"):
        methods.register("kd", methods.flow_matching)

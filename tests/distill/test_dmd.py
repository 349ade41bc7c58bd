"""DMD with self-forcing: the gradient, the alternation of generator and critic, the exit step, the one
sampler shared with s2dit stream, and the trainer running (and resuming) it; real torchrun for the ranks."""

import os
import subprocess
import sys

import pytest
import torch
from distill_fixtures import distill_config, make_teacher
from train_fixtures import tiny_config

import s2dit.distill.methods  # noqa: F401 - registers method dmd
from s2dit.config import save_config
from s2dit.diffusion.flow import x0_from_velocity
from s2dit.diffusion.sampling import Condition
from s2dit.diffusion.streaming import StreamSampler, StreamSettings, denoise_chunk
from s2dit.distill.dmd import DMD, dmd_gradient, dmd_surrogate, exit_step
from s2dit.model.denoiser import load_denoiser
from s2dit.train.config import OptimConfig
from s2dit.train.distributed import World
from s2dit.train.log import read_log
from s2dit.train.trainer import Trainer

BIN = os.path.dirname(sys.executable)
CPU = World(0, 1, 0, torch.device("cpu"))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return make_teacher(tmp_path_factory.mktemp("teacher"))


def dmd_config(latents, teacher, out, **kw):
    distill = distill_config(teacher=str(teacher), cfg=3.0, generator_every=2, critic_lr=1e-3)
    base = dict(method="dmd", distill=distill, steps=4, log_every=2, checkpoint_every=2, ema_decay=0.99)
    base.update(kw)
    return tiny_config(latents, out, **base)


def test_the_generator_gradient_is_the_normalised_score_difference():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 3, 6, 8, requires_grad=True)
    real, fake = torch.randn(2, 4, 3, 6, 8), torch.randn(2, 4, 3, 6, 8)
    grad = dmd_gradient(x.detach(), real, fake)
    dmd_surrogate(x, grad).backward()
    for i in range(2):  # (fake - real) / mean|x - real|, per sample; the surrogate averages over elements
        analytic = (fake[i] - real[i]) / (x[i].detach() - real[i]).abs().mean()
        assert torch.allclose(x.grad[i] * x.numel(), analytic, rtol=1e-5, atol=1e-6)


def test_the_real_score_is_the_teachers_guided_velocity():
    """``u + g·(c - u)``: guidance pushes past the conditional velocity, away from the unconditional one.
    A stand-in teacher whose velocity is the mean of the prompt tokens makes every term visible."""

    class Teacher:
        def __call__(self, x_t, t, text, mask):
            return torch.ones_like(x_t) * text.mean(dim=(1, 2))[:, None, None, None, None]

    method = DMD.__new__(DMD)  # only the teacher and the guidance scale are needed
    method.teacher = Teacher()
    x_t, t = torch.randn(2, 4, 3, 6, 8), torch.full((2, 3), 500.0)
    cond = Condition(torch.full((2, 5, 16), 1.0), torch.ones(2, 5, dtype=torch.bool))
    uncond = Condition(torch.full((2, 5, 16), 0.25), torch.ones(2, 5, dtype=torch.bool))
    for g, expected in ((4.0, 0.25 + 4.0 * (1.0 - 0.25)), (1.0, 1.0), (0.0, 0.25)):
        method.cfg = distill_config(cfg=g)
        real = method.real_score(x_t, t, cond, uncond)
        assert torch.allclose(real, torch.full_like(x_t, expected)), (g, real.flatten()[0].item(), expected)


def _gaussian_velocity(x_t: torch.Tensor, t: torch.Tensor, mean, spread: float) -> torch.Tensor:
    """The exact flow-matching velocity of data ``N(mean, spread²)`` at ``x_t`` (levels ``t [B, T]``)."""
    sigma = (t / 1000.0)[:, None, :, None, None]
    gain = (1 - sigma) * spread**2 / ((1 - sigma) ** 2 * spread**2 + sigma**2)
    x0 = mean + gain * (x_t - (1 - sigma) * mean)
    return (x_t - x0) / sigma


class _GaussianTeacher(torch.nn.Module):
    """The exact velocity of data ``N(m, 0.5²)``, ``m`` read off the prompt's first token."""

    def forward(self, x_t, t, text, mask):
        return _gaussian_velocity(x_t, t, text[:, 0, 0][:, None, None, None, None], 0.5)


@pytest.mark.parametrize("guidance", [1.0, 4.0])
def test_dmd_moves_a_generator_to_the_guided_teacher_distribution(guidance):
    """A toy problem with exact scores: the teacher's data is N(1, 0.5²) for the prompt and N(0, 0.5²) for
    the empty prompt, so its guided score ``u + g·(c - u)`` is exactly that of N(g, 0.5²); the generator
    draws N(θ, 0.5²) and the critic is exact for it. DMD's updates must carry θ from -1 to g, the side of
    the prompt (a reversed guidance or gradient sign would carry it to -g or away)."""
    method = DMD.__new__(DMD)  # the real score, the re-noising and the gradient: the method's own code
    method.teacher, method.seed = _GaussianTeacher(), 0
    method.cfg = distill_config(cfg=guidance, min_sigma=0.05, max_sigma=0.95, shift=1.0)
    B = 64
    cond = Condition(torch.ones(B, 2, 4), torch.ones(B, 2, dtype=torch.bool))
    uncond = Condition(torch.zeros(B, 2, 4), torch.ones(B, 2, dtype=torch.bool))
    theta = torch.nn.Parameter(torch.tensor(-1.0))
    optimizer = torch.optim.Adam([theta], lr=0.05)
    g = torch.Generator().manual_seed(0)
    for step in range(300):
        x = theta + 0.5 * torch.randn(B, 1, 1, 2, 2, generator=g)
        x_t, _, _, t = method.noisy(x.detach(), list(range(step * B, (step + 1) * B)), salt=2)
        x0_real = x0_from_velocity(x_t, method.real_score(x_t, t, cond, uncond), t / 1000.0)
        x0_fake = x0_from_velocity(x_t, _gaussian_velocity(x_t, t, theta.detach(), 0.5), t / 1000.0)
        dmd_surrogate(x, dmd_gradient(x.detach(), x0_real, x0_fake)).backward()
        optimizer.step()
        optimizer.zero_grad()
    assert abs(theta.item() - guidance) < 0.15, theta.item()


def test_the_exit_step_depends_on_the_iteration_only():
    draws = [exit_step(7, it, 4) for it in range(200)]
    assert set(draws) == {0, 1, 2, 3}
    assert draws == [exit_step(7, it, 4) for it in range(200)]  # what any other rank computes
    assert draws != [exit_step(8, it, 4) for it in range(200)]


def test_only_the_exit_step_carries_gradient():
    grads = []

    def velocity(x, t):
        grads.append(torch.is_grad_enabled())
        return x * w

    w = torch.ones((), requires_grad=True)
    noise = torch.randn(5, 1, 4, 1, 2, 2)
    sigmas = [1.0, 0.9, 0.8, 0.6]
    x0 = denoise_chunk(
        velocity, noise, sigmas, lambda s: torch.full((1, 1), s * 1000), exit_step=2, grad=True
    )
    assert grads == [False, False, True] and x0.requires_grad
    grads.clear()
    full = denoise_chunk(velocity, noise, sigmas, lambda s: torch.full((1, 1), s * 1000))
    assert grads == [False] * 4 and not full.requires_grad


def make_dmd(latents, teacher, tmp_path, **kw):
    cfg = dmd_config(latents, teacher, tmp_path / "run", **kw)
    trainer = Trainer(cfg, progress=False)
    return trainer, trainer.method


def test_critic_and_generator_updates_leave_each_other_alone(latents, teacher, tmp_path, monkeypatch):
    trainer, method = make_dmd(latents, teacher, tmp_path)
    generator = trainer.model
    calls = []
    original = StreamSampler.next_chunk

    def spy(self, exit_step=None, grad=False):  # the self-forcing rollout is s2dit stream's own loop
        calls.append((exit_step, grad))
        return original(self, exit_step, grad)

    monkeypatch.setattr(StreamSampler, "next_chunk", spy)
    batch = trainer.train_data.batch([0, 1])
    gen_before = {k: v.clone() for k, v in generator.state_dict().items()}
    critic_before = {k: v.clone() for k, v in method.critic.state_dict().items()}
    teacher_before = {k: v.clone() for k, v in method.teacher.state_dict().items()}

    loss, logs = method.loss(generator, batch, trainer.null, torch.device("cpu"), step=1)  # critic only
    assert loss is None and "critic_loss" in logs
    assert calls == [(exit_step(0, 1, 4), False)] * 3  # three chunks of one latent frame, no gradient
    assert all(p.grad is None for p in generator.parameters())
    assert all(torch.equal(v, gen_before[k]) for k, v in generator.state_dict().items())
    assert any(not torch.equal(v, critic_before[k]) for k, v in method.critic.state_dict().items())

    calls.clear()
    critic_mid = {k: v.clone() for k, v in method.critic.state_dict().items()}
    loss, logs = method.loss(generator, batch, trainer.null, torch.device("cpu"), step=2)  # generator too
    assert calls == [(exit_step(0, 2, 4), True)] * 3 and loss.requires_grad
    loss.backward()
    assert all(p.grad is None for p in method.critic.parameters())  # the generator loss stops at the critic
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.parameters())
    assert any(not torch.equal(v, critic_mid[k]) for k, v in method.critic.state_dict().items())
    assert all(torch.equal(v, teacher_before[k]) for k, v in method.teacher.state_dict().items())


def test_the_critic_learns_the_flow_matching_velocity_of_the_rollout(latents, teacher, tmp_path):
    """The fake score is trained towards ``noise - x`` on the re-noised rollout: the step's loss is that MSE
    from the critic before the step, and the step lowers it (a critic taught ``x - noise`` would not)."""
    trainer, method = make_dmd(latents, teacher, tmp_path)
    batch = trainer.train_data.batch([0, 1])
    cond = Condition(batch["text"], batch["mask"])
    x = torch.randn(batch["latents"].shape, generator=torch.Generator().manual_seed(3))
    positions = batch["positions"]

    def mse() -> float:
        x_t, noise, _, t = method.noisy(x, positions, salt=3)
        with torch.no_grad():
            v = method.critic(x_t, t, cond.text, cond.mask).float()
        return float((v - (noise - x)).square().mean())

    before = mse()
    assert method.critic_step(x, cond, positions) == pytest.approx(before, rel=1e-5)
    for _ in range(3):
        method.critic_step(x, cond, positions)
    assert mse() < before


def test_the_noise_levels_are_uniform_in_the_range_then_shifted(latents, teacher, tmp_path):
    """``σ = shift(lo + (hi - lo)·u)``: inverting the shift gives back uniform draws over ``[lo, hi]``."""
    _, method = make_dmd(latents, teacher, tmp_path)
    method.cfg.min_sigma, method.cfg.max_sigma, method.cfg.shift = 0.3, 0.8, 4.0
    sigma, _ = method.noise_levels(list(range(4000)), salt=2)
    u = sigma / (4.0 - 3.0 * sigma)  # the inverse of shift_sigma(., 4)
    assert 0.3 <= float(u.min()) < 0.31 and 0.79 < float(u.max()) <= 0.8
    assert torch.quantile(u, torch.tensor([0.25, 0.5, 0.75])).tolist() == pytest.approx(
        [0.425, 0.55, 0.675], abs=0.015
    )


def test_each_sample_rolls_out_from_its_own_seed(latents, teacher, tmp_path, monkeypatch):
    """The rollout's stream seeds follow the sample, not the batch: different samples, different noise;
    the same sample in another batch, the same noise."""
    trainer, method = make_dmd(latents, teacher, tmp_path)
    seen = []
    original = StreamSampler.__init__

    def spy(self, *args, seed=None, **kw):
        seen.append(list(seed))
        original(self, *args, seed=seed, **kw)

    monkeypatch.setattr(StreamSampler, "__init__", spy)
    for positions in ([0, 1], [1, 2], [0, 62]):
        method.loss(
            trainer.model, trainer.train_data.batch(positions), trainer.null, torch.device("cpu"), step=1
        )
    (a, b), (b_again, c), (a_again, d) = seen
    assert len({a, b, c, d}) == 4 and b_again == b and a_again == a  # no seed wraps round within a run


def test_the_rollout_is_the_stream_with_the_runs_stream_settings(latents, teacher, tmp_path):
    """Chunk after chunk of ``StreamSampler`` with ``distill.stream`` (not the sampler's defaults), joined
    along time; a clip that is not whole chunks is refused."""
    from s2dit.errors import ConfigError

    trainer, method = make_dmd(latents, teacher, tmp_path)
    batch = trainer.train_data.batch([0, 1])
    cond = Condition(batch["text"], batch["mask"])
    C, T, H, W = batch["latents"].shape[1:]
    s = method.cfg.stream
    assert s != StreamSettings() and T // s.chunk_frames > 1
    with torch.no_grad():
        x = method.rollout(trainer.model, cond, (C, T, H, W), [5, 6], exit=1, grad=False)
        reference = StreamSampler(trainer.model, cond, (H, W), s, seed=[5, 6])
        expected = torch.cat([reference.next_chunk(1) for _ in range(T // s.chunk_frames)], dim=2)
    assert x.shape == (2, C, T, H, W) and torch.equal(x, expected)
    method.cfg.stream = StreamSettings(steps=4, chunk_frames=2)
    with pytest.raises(ConfigError, match=r"^3 latent frames are not whole chunks of 2 \(distill\.stream\)$"):
        method.rollout(trainer.model, cond, (C, T, H, W), [5, 6], exit=1, grad=False)


def test_the_scores_see_the_prompt_masks(latents, teacher, tmp_path):
    """The critic (in the generator step and its own step) sees the batch's mask; the teacher sees it for
    the prompt and the null prompt's mask for the unconditional half."""
    trainer, method = make_dmd(latents, teacher, tmp_path)
    batch = trainer.train_data.batch([0, 1])
    assert not batch["mask"].all()  # captions shorter than text_len: padding to mask out
    seen: dict[str, list] = {"critic": [], "teacher": []}
    for name in seen:
        net = getattr(method, name)

        def spy(x_t, t, text, mask, real=net.forward, name=name):
            seen[name].append(mask)
            return real(x_t, t, text, mask)

        net.forward = spy
    method.loss(trainer.model, batch, trainer.null, torch.device("cpu"), step=0)
    null_mask = trainer.null[1].expand(2, -1)
    assert not torch.equal(null_mask, batch["mask"])
    assert len(seen["critic"]) == 2 and all(
        m is not None and torch.equal(m, batch["mask"]) for m in seen["critic"]
    )
    cond_mask, uncond_mask = seen["teacher"]
    assert torch.equal(cond_mask, batch["mask"]) and torch.equal(uncond_mask, null_mask)


def test_the_generator_loss_is_the_distribution_matching_surrogate(latents, teacher, tmp_path):
    """Recomputed from the method's parts at the rollout the loss made: re-noised with the generator's own
    draw (salt 2), both scores turned into x0 at σ = t/1000, the normalised difference; the surrogate's
    value is half its mean square and the log its root mean square."""
    trainer, method = make_dmd(latents, teacher, tmp_path)
    batch = trainer.train_data.batch([0, 1])
    made = []
    rollout = method.rollout

    def spy(*args, **kw):
        made.append(rollout(*args, **kw))
        return made[-1]

    method.rollout = spy
    critic_before = {k: v.clone() for k, v in method.critic.state_dict().items()}
    loss, logs = method.loss(trainer.model, batch, trainer.null, torch.device("cpu"), step=0)
    changed = {k: v.clone() for k, v in method.critic.state_dict().items()}
    method.critic.load_state_dict(critic_before)  # the scores as the generator step saw them
    cond = Condition(batch["text"], batch["mask"])
    uncond = Condition(trainer.null[0].expand(2, -1, -1), trainer.null[1].expand(2, -1))
    with torch.no_grad():
        x = made[0].detach()
        x_t, _, _, t = method.noisy(x, batch["positions"], salt=2)
        s = t / 1000.0
        x0_real = x0_from_velocity(x_t, method.real_score(x_t, t, cond, uncond), s)
        x0_fake = x0_from_velocity(x_t, method.critic(x_t, t, cond.text, cond.mask).float(), s)
        g = dmd_gradient(x, x0_real, x0_fake)
    assert float(g.abs().max()) > 0
    assert loss.item() == pytest.approx(0.5 * float(g.square().mean()), rel=1e-4)
    assert logs["dmd_grad_norm"] == pytest.approx(float(g.square().mean().sqrt()), rel=1e-4)
    assert any(not torch.equal(v, changed[k]) for k, v in critic_before.items())


def test_the_teacher_is_frozen_and_the_critic_trains_at_its_own_rate(latents, teacher, tmp_path):
    distill = distill_config(teacher=str(teacher), critic_lr=3e-4, critic_betas=[0.5, 0.9])
    method = DMD(distill, CPU, 0)
    assert not any(p.requires_grad for p in method.teacher.parameters())
    assert all(p.requires_grad for p in method.critic.parameters()) and method.critic.training
    (group,) = method.optimizer.param_groups
    assert group["lr"] == 3e-4 and tuple(group["betas"]) == (0.5, 0.9)


def test_no_gradient_when_the_critic_is_the_real_score(latents, teacher, tmp_path):
    """With the critic equal to the guidance-free teacher, fake == real: DMD has nothing to correct."""
    trainer, method = make_dmd(latents, teacher, tmp_path)
    method.cfg.cfg = 1.0
    batch = trainer.train_data.batch([0, 1])
    loss, _ = method.loss(trainer.model, batch, trainer.null, torch.device("cpu"), step=0)
    loss.backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in trainer.model.parameters())


def test_the_generator_step_guides_with_the_prompt_against_the_empty_prompt(latents, teacher, tmp_path):
    """The loss hands the real score the batch's prompts as ``cond`` and the null prompt as ``uncond`` (in
    that order: swapped, the guidance would push away from the prompt)."""
    trainer, method = make_dmd(latents, teacher, tmp_path)
    seen = []
    real = method.real_score

    def spy(x_t, t, cond, uncond):
        seen.append((cond.text.clone(), uncond.text.clone()))
        return real(x_t, t, cond, uncond)

    method.real_score = spy
    batch = trainer.train_data.batch([0, 1])
    method.loss(trainer.model, batch, trainer.null, torch.device("cpu"), step=0)  # a generator step
    assert len(seen) == 1
    cond, uncond = seen[0]
    assert torch.equal(cond, batch["text"])
    assert torch.equal(uncond, trainer.null[0].expand_as(uncond)) and not torch.equal(cond, uncond)


def test_dmd_trains_and_resumes_exactly(latents, teacher, tmp_path):
    straight = Trainer(dmd_config(latents, teacher, tmp_path / "straight"), progress=False)
    straight.run()
    rows = read_log(tmp_path / "straight")
    assert all("critic_loss" in r and "exit_step" in r for r in rows) and all("loss" in r for r in rows)
    Trainer(dmd_config(latents, teacher, tmp_path / "resumed"), progress=False).run(max_steps=2)
    Trainer(dmd_config(latents, teacher, tmp_path / "resumed"), progress=False).run()  # critic restored too
    a, b = load_denoiser(tmp_path / "straight"), load_denoiser(tmp_path / "resumed")
    assert all(torch.allclose(v, b.state_dict()[k], atol=1e-6) for k, v in a.state_dict().items())
    assert read_log(tmp_path / "straight")[-1]["critic_loss"] == pytest.approx(
        read_log(tmp_path / "resumed")[-1]["critic_loss"], rel=1e-5
    )


def test_dmd_refusals(latents, teacher, tmp_path):
    from s2dit.errors import ConfigError

    with pytest.raises(ConfigError, match="grad_accum"):
        dmd_config(latents, teacher, tmp_path / "x", grad_accum=2)
    with pytest.raises(ConfigError, match=r"^method dmd needs distill\.teacher \(the real score\)$"):
        DMD(distill_config(), CPU, 0)


@pytest.mark.slow
def test_two_processes_roll_out_and_update_like_one(latents, teacher, tmp_path):
    """Real torchrun (gloo): the same exit steps, losses and final weights as one process."""
    runs = {}
    for nproc in (1, 2):
        cfg = dmd_config(
            latents, teacher, tmp_path / f"run{nproc}", optim=OptimConfig(lr=1e-3, warmup_steps=1)
        )
        save_config(cfg, tmp_path / f"run{nproc}.yaml")
        cmd = [f"{BIN}/torchrun", f"--nproc-per-node={nproc}", "--no-python", f"{BIN}/s2dit", "train"]
        result = subprocess.run(
            [*cmd, "--config", str(tmp_path / f"run{nproc}.yaml")],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        runs[nproc] = read_log(tmp_path / f"run{nproc}")
    for one, two in zip(runs[1], runs[2], strict=True):
        assert one["exit_step"] == two["exit_step"]
        assert one["loss"] == pytest.approx(two["loss"], rel=1e-4)
    a = load_denoiser(tmp_path / "run1").state_dict()
    b = load_denoiser(tmp_path / "run2").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_the_shipped_micro_ar_streams(repo_root):
    """weights/micro_ar: an S2DiT with its streaming settings; it streams a prompt into varied latents."""
    from s2dit.diffusion.pipeline import read_pipeline
    from s2dit.diffusion.sampling import Condition
    from s2dit.model.transformer import S2DiT
    from s2dit.train.evaluate import stream_latents

    folder = repo_root / "weights" / "micro_ar"
    model = load_denoiser(folder)
    info = read_pipeline(folder)
    assert isinstance(model, S2DiT) and next(model.parameters()).dtype == torch.float32
    assert info.stream.steps == 4 and info.stream.chunk_frames == 1 and info.sampler == "stream"
    assert (repo_root / info.vae / "tiny_ae.safetensors").is_file()
    cond = Condition(torch.randn(1, 12, 384) * 0.1, torch.ones(1, 12, dtype=torch.bool))
    latents = stream_latents(model, cond, (16, 2, 18, 32), info.stream, [0])
    assert latents.shape == (1, 16, 2, 18, 32) and torch.isfinite(latents).all() and latents.std() > 0.3

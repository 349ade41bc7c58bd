"""The autoencoder trainers' batches (ClipSampler), learning-rate schedule and loss."""

import pytest
import torch

from s2dit.config import VideoSpec
from s2dit.errors import ConfigError
from s2dit.train.clips import ClipSampler, check_clip_settings
from s2dit.train.vae import AETrainConfig, lr_at, reconstruction_loss


class FrameNumbered:
    """Videos whose pixel value encodes (video, frame, row, column), so a clip says where it came from."""

    def __init__(self, videos=5, frames=17, height=24, width=32):
        self.shape = (videos, frames, height, width)

    def __len__(self):
        return self.shape[0]

    def code(self, i):
        _, F, H, W = self.shape
        f, y, x = torch.meshgrid(torch.arange(F), torch.arange(H), torch.arange(W), indexing="ij")
        # Red: video * 40 + frame; green: row; blue: column (exact in uint8 after the [-1, 1] round trip).
        return torch.stack([i * 40 + f, y, x]).float()

    def __getitem__(self, i):
        return {"pixels": self.code(i) / 127.5 - 1}


def decode(clip):
    """uint8 codes of a sampled clip ``[3, F, h, w]``."""
    return ((clip + 1) * 127.5).round().long()


def test_clips_are_strided_crops_of_one_video():
    data = FrameNumbered()
    sampler = ClipSampler(data, 5, [1, 2, 4], [16, 8], batch_size=16, seed=0, preload=False)
    batch = sampler.batch(3)
    assert batch.shape == (16, 3, 5, 8, 16) and batch.dtype == torch.float32
    strides = set()
    for clip in decode(batch):
        video, frames = clip[0, :, 0, 0] // 40, clip[0, :, 0, 0] % 40
        assert (video == video[0]).all() and 0 <= video[0] < 5
        step = frames[1:] - frames[:-1]
        assert (step == step[0]).all() and int(step[0]) in (1, 2, 4)
        strides.add(int(step[0]))
        # One crop: rows and columns are contiguous and the same in every frame.
        y0, x0 = int(clip[1, 0, 0, 0]), int(clip[2, 0, 0, 0])
        assert torch.equal(clip[1], (y0 + torch.arange(8)).view(1, 8, 1).expand(5, 8, 16))
        assert torch.equal(clip[2], (x0 + torch.arange(16)).view(1, 1, 16).expand(5, 8, 16))
    assert strides == {1, 2, 4}  # 16 draws meet every stride


def test_batches_depend_on_seed_and_step_only():
    data = FrameNumbered()
    a = ClipSampler(data, 5, [1, 2, 4], [16, 8], batch_size=4, seed=0, preload=True, progress=False)
    b = ClipSampler(data, 5, [1, 2, 4], [16, 8], batch_size=4, seed=0, preload=False)
    assert torch.equal(a.batch(7), b.batch(7))  # preloaded == decoded on demand
    assert torch.equal(a.batch(7), a.batch(7)) and not torch.equal(a.batch(7), a.batch(8))
    other = ClipSampler(data, 5, [1, 2, 4], [16, 8], batch_size=4, seed=1, preload=False)
    assert not torch.equal(other.batch(7), a.batch(7))


def test_clip_settings_are_checked():
    video = VideoSpec(width=64, height=48, frames=17)
    check_clip_settings(5, [1, 4], [32, 32], video)
    with pytest.raises(ConfigError, match="4k\\+1"):
        check_clip_settings(6, [1], [32, 32], video)
    with pytest.raises(ConfigError, match="spans 33 frames"):
        check_clip_settings(9, [1, 4], [32, 32], video)
    with pytest.raises(ConfigError, match="strides"):
        check_clip_settings(5, [0], [32, 32], video)
    with pytest.raises(ConfigError, match="crop"):
        check_clip_settings(5, [1], [72, 32], video)
    with pytest.raises(ConfigError, match="clip_frames"):
        AETrainConfig(clip_frames=17, strides=[4])  # 65 frames from 33-frame videos


def test_learning_rate_warms_up_then_follows_the_cosine():
    cfg = AETrainConfig(lr=1.0, warmup_steps=10, steps=110, final_lr_ratio=0.1)
    assert lr_at(cfg, 0) == pytest.approx(0.1)
    assert lr_at(cfg, 9) == pytest.approx(
        1.0 * (0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(9 / 110 * 3.14159265)).item()))
    )
    assert lr_at(cfg, 55) == pytest.approx(0.55)  # half-way down the cosine
    assert lr_at(cfg, 110) == pytest.approx(0.1)
    constant = AETrainConfig(lr=1.0, warmup_steps=0, schedule="constant")
    assert lr_at(constant, 0) == lr_at(constant, 3999) == 1.0
    with pytest.raises(ConfigError, match="schedule"):
        AETrainConfig(schedule="linear")
    with pytest.raises(ConfigError, match="precision"):
        AETrainConfig(precision="float16")


def test_the_loss_adds_the_mse_term():
    target = torch.zeros(1, 3, 1, 8, 8)
    recon = target + 0.5
    plain = reconstruction_loss(recon, target, AETrainConfig(mse_weight=0.0))
    assert plain == pytest.approx(0.5)  # uniform target: the weighted L1 is the plain L1
    assert reconstruction_loss(recon, target, AETrainConfig(mse_weight=2.0)) == pytest.approx(0.5 + 2 * 0.25)


def test_a_run_folder_checkpointed_in_the_old_format_is_refused_with_how_to_restart(tmp_path):
    from s2dit.errors import S2DitError
    from s2dit.train.vae import train_autoencoder

    (tmp_path / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(
        S2DitError, match=r"older format \(checkpoint\.pt\).* delete .*checkpoint\.pt to restart"
    ):
        train_autoencoder(AETrainConfig(out=str(tmp_path)), progress=False)

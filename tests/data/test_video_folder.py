import json

import numpy as np
import pytest
import torch

from s2dit.config import VideoSpec
from s2dit.data.video_folder import VideoFolderDataset, read_captions, resize_center_crop, source_indices
from s2dit.errors import S2DitError
from s2dit.videoio import write_video


def numbered_clip(frames: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frame i is a flat grey of 8*i: the frame index can be read back from the pixels."""
    return np.stack([np.full((height, width, 3), 8 * i, np.uint8) for i in range(frames)])


@pytest.fixture
def folder(tmp_path):
    write_video(tmp_path / "good.mp4", numbered_clip(30), fps=32)
    write_video(tmp_path / "short.mp4", numbered_clip(5), fps=32)
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x01garbage" * 50)
    write_video(tmp_path / "sub" / "wide.mp4", numbered_clip(12, 48, 128), fps=8)
    (tmp_path / "captions.csv").write_text(
        "file,caption\ngood.mp4,a good clip\nshort.mp4,too short\ncorrupt.mp4,broken\n"
        "sub/wide.mp4,a wide clip\nmissing.mp4,gone\n"
    )
    return tmp_path


def test_skips_corrupt_short_and_missing_files_and_counts_them(folder):
    spec = VideoSpec(width=32, height=32, frames=9, fps=16)
    with pytest.warns(UserWarning, match="skipped 3 of 5"):
        ds = VideoFolderDataset(folder, spec)
    assert len(ds) == 2
    assert dict(ds.skipped) == {"too_short": 1, "unreadable": 1, "missing": 1}
    item = ds[0]
    assert item["caption"] == "a good clip" and item["video"] == "good.mp4"
    assert item["pixels"].shape == (3, 9, 32, 32) and item["pixels"].dtype == torch.float32
    assert item["pixels"].min() >= -1.0 and item["pixels"].max() <= 1.0


def test_resamples_to_the_target_fps(folder):
    spec = VideoSpec(width=32, height=32, frames=9, fps=16)
    with pytest.warns(UserWarning):
        ds = VideoFolderDataset(folder, spec)
    grey = (ds[0]["pixels"][0, :, 16, 16] + 1) * 127.5  # 32 fps source -> every second frame
    assert np.allclose(grey.numpy(), 8 * np.arange(0, 18, 2), atol=3)
    wide = (ds[1]["pixels"][0, :, 16, 16] + 1) * 127.5  # 8 fps source -> each frame twice
    assert np.allclose(wide.numpy(), 8 * np.repeat(np.arange(5), 2)[:9], atol=3)


def test_random_start_stays_in_range(folder):
    spec = VideoSpec(width=32, height=32, frames=5, fps=16)
    with pytest.warns(UserWarning):
        ds = VideoFolderDataset(folder, spec, random_start=True)
    torch.manual_seed(0)
    starts = {round(float((ds[0]["pixels"][0, 0, 0, 0] + 1) * 127.5 / 8)) for _ in range(12)}
    assert len(starts) > 1 and max(starts) <= 30 - 9


def test_micro_world_folder_and_dataloader(micro_world):
    ds = VideoFolderDataset(micro_world, VideoSpec(width=128, height=80, frames=17, fps=16))
    assert len(ds) == 24 and not ds.skipped
    first = json.loads((micro_world / "clips.jsonl").read_text().splitlines()[0])
    assert ds[0]["caption"] == first["caption"]
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["pixels"].shape == (4, 3, 17, 80, 128) and len(batch["caption"]) == 4


def test_resize_center_crop_covers_and_crops():
    frames = torch.zeros(2, 40, 100, 3, dtype=torch.uint8)
    frames[:, :, 45:55] = 255  # a bright centre column
    out = resize_center_crop(frames, 32, 32)
    assert out.shape == (3, 2, 32, 32)
    assert out[:, :, :, 16].min() > 0.9 and out[:, :, :, 0].max() < -0.9
    portrait = resize_center_crop(torch.zeros(1, 100, 60, 3, dtype=torch.uint8), 144, 256)
    assert portrait.shape == (3, 1, 256, 144)


def test_source_indices():
    spec = VideoSpec(width=16, height=16, frames=5, fps=10)
    assert source_indices(100, 30.0, spec).tolist() == [0, 3, 6, 9, 12]
    assert source_indices(100, 30.0, spec, start=5).tolist() == [5, 8, 11, 14, 17]
    assert source_indices(12, 30.0, spec) is None


def test_folder_errors(tmp_path):
    with pytest.raises(S2DitError, match="not found"):
        VideoFolderDataset(tmp_path / "nope", VideoSpec())
    with pytest.raises(S2DitError, match=r"no clips.jsonl, captions.jsonl or captions.csv"):
        read_captions(tmp_path)
    (tmp_path / "captions.jsonl").write_text('{"video": "a.mp4", "caption": "x"}\nnot json\n')
    with pytest.warns(UserWarning, match="not JSON"):
        assert read_captions(tmp_path) == [("a.mp4", "x")]


def test_empty_datasets_are_an_error_and_csv_bom_is_accepted(tmp_path):
    write_video(tmp_path / "a.mp4", numbered_clip(12), fps=8)
    (tmp_path / "captions.csv").write_text("\ufeffvideo,caption\na.mp4,hello\n", encoding="utf-8")
    assert len(VideoFolderDataset(tmp_path, VideoSpec(width=32, height=32, frames=5, fps=8))) == 1
    (tmp_path / "captions.csv").write_text("video,caption\n")
    with pytest.raises(S2DitError, match="no usable videos"):
        VideoFolderDataset(tmp_path, VideoSpec(width=32, height=32, frames=5, fps=8))

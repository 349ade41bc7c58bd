import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from s2dit.data.encode import EncodeConfig, LatentShardDataset, encode_folder
from s2dit.errors import S2DitError
from s2dit.latent.tiny_ae import TinyAEConfig, TinyAutoencoder, save_tiny_ae


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vae")
    torch.manual_seed(0)
    save_tiny_ae(TinyAutoencoder(TinyAEConfig(widths=[4, 8, 8, 8])), folder)
    return folder


@pytest.fixture
def world(micro_world, tmp_path):
    """A copy of the micro world with one clip broken."""
    folder = tmp_path / "world"
    shutil.copytree(micro_world, folder)
    (folder / "clips" / "000005.mp4").write_bytes(b"broken")
    return folder


def config(world, out, vae_dir, **kw):
    return EncodeConfig(
        videos=str(world), out=str(out), vae=str(vae_dir), shard_size=5, text_max_length=24, **kw
    )


def test_encode_writes_shards_index_and_a_dataset(world, vae_dir, tmp_path):
    out = tmp_path / "latents"
    with pytest.warns(UserWarning):
        summary = encode_folder(config(world, out, vae_dir), progress=False)
    assert summary == {"rank": 0, "shards": 5, "clips": 23, "skipped": 1}
    index = json.loads((out / "index.json").read_text())
    assert index["clips"] == 23 and index["skipped"] == 1 and len(index["shards"]) == 5
    ds = LatentShardDataset(out)
    item = ds[0]
    assert item["latents"].shape == (16, 9, 18, 32) and item["text"].shape[1] == 384
    assert item["caption"] and item["objects"][0]["color"]  # micro-world attributes travel with the clip
    assert "000005" not in "".join(row["video"] for _, _, row in ds.items)


def test_ranks_split_the_shards_and_a_rerun_resumes(world, vae_dir, tmp_path, monkeypatch):
    out = tmp_path / "latents"
    cfg = config(world, out, vae_dir)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    out.mkdir()
    in_progress = out / ".tmp-shard-00000.safetensors.rank0"  # rank 0 is writing its shard 0
    stale = out / ".tmp-shard-00003.safetensors.killed"  # rank 1's own write from a killed run
    in_progress.write_bytes(b"x")
    stale.write_bytes(b"x")
    with pytest.warns(UserWarning):
        assert encode_folder(cfg, progress=False)["shards"] == 2  # shards 1 and 3
    assert sorted(p.name for p in out.glob("shard-*.json")) == ["shard-00001.json", "shard-00003.json"]
    assert in_progress.exists() and not stale.exists()  # a rank cleans up only its own writes
    in_progress.unlink()
    assert not (out / "index.json").exists()  # rank 0 has not finished
    monkeypatch.setenv("RANK", "0")
    with pytest.warns(UserWarning):
        assert encode_folder(cfg, progress=False)["shards"] == 3
    assert json.loads((out / "index.json").read_text())["clips"] == 23
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert encode_folder(cfg, progress=False)["shards"] == 0  # everything is done: nothing is redone
    with pytest.raises(S2DitError, match="other settings"):
        encode_folder(config(world, out, vae_dir, text="other"), progress=False)


@pytest.mark.slow
def test_torchrun_with_two_processes(world, vae_dir, tmp_path):
    out = tmp_path / "latents"
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [
        torchrun,
        "--nproc-per-node=2",
        "--no-python",
        os.path.join(os.path.dirname(sys.executable), "s2dit"),
        "data",
        "encode",
        "--set",
        f"videos={world}",
        "--set",
        f"out={out}",
        "--set",
        f"vae={vae_dir}",
        "--set",
        "shard_size=5",
        "--set",
        "text_max_length=24",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "rank 0:" in result.stdout and "rank 1:" in result.stdout
    assert json.loads((out / "index.json").read_text())["clips"] == 23
    assert len(LatentShardDataset(out)) == 23


def test_an_interrupted_run_resumes_to_the_same_shards(world, vae_dir, tmp_path):
    from safetensors.torch import load_file

    whole, broken = tmp_path / "whole", tmp_path / "broken"
    with pytest.warns(UserWarning):
        encode_folder(config(world, whole, vae_dir), progress=False)
    shutil.copytree(whole, broken)
    # A kill mid-run: shard 2 written but not its .json, shard 3 half-written, no index.
    (broken / "shard-00002.json").unlink()
    (broken / "shard-00003.json").unlink()
    (broken / "shard-00003.safetensors").unlink()
    (broken / ".tmp-shard-00003.safetensors.x.safetensors").write_bytes(b"partial")
    (broken / "index.json").unlink()
    with pytest.warns(UserWarning):
        assert encode_folder(config(world, broken, vae_dir), progress=False)["shards"] == 2
    assert sorted(p.name for p in broken.iterdir()) == sorted(p.name for p in whole.iterdir())
    for s in range(5):
        a, b = (
            load_file(whole / f"shard-{s:05d}.safetensors"),
            load_file(broken / f"shard-{s:05d}.safetensors"),
        )
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

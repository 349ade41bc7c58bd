"""Paths in ``pipeline.yaml`` resolve from the file's own folder (older, repository-root-relative ones
still load), and the shipped models are found from any working directory."""

import os

import pytest

from s2dit.diffusion.pipeline import read_pipeline
from s2dit.errors import S2DitError


def test_paths_resolve_relative_to_the_pipeline_folder(tmp_path, monkeypatch):
    (tmp_path / "vae").mkdir()
    model = tmp_path / "models" / "m"
    model.mkdir(parents=True)
    (model / "pipeline.yaml").write_text("vae: ../../vae\ntext: minilm\n")
    monkeypatch.chdir(tmp_path / "models")
    info = read_pipeline(model)
    assert info.vae == str(tmp_path / "vae") and info.text == "minilm"


def test_older_paths_resolve_from_the_working_directory_then_the_repository(tmp_path, monkeypatch, repo_root):
    (tmp_path / "runs" / "vae").mkdir(parents=True)
    model = tmp_path / "runs" / "m" / "model"
    model.mkdir(parents=True)
    (model / "pipeline.yaml").write_text("vae: runs/vae\n")
    monkeypatch.chdir(tmp_path)  # the trainer wrote it from here: the path stays as written
    assert read_pipeline(model.parent).vae == "runs/vae"

    (model / "pipeline.yaml").write_text("vae: weights/micro_vae_v1\n")  # the repository's own folders
    assert read_pipeline(model).vae == str(repo_root / "weights" / "micro_vae_v1")

    (model / "pipeline.yaml").write_text("vae: nowhere/vae\n")  # missing: the loader says so
    assert read_pipeline(model).vae == "nowhere/vae"


def test_the_shipped_models_load_from_another_directory(tmp_path, monkeypatch):
    from s2dit.shipped import GENERATE_MODEL, STREAM_MODEL, shipped_model

    monkeypatch.chdir(tmp_path)
    for name in (STREAM_MODEL, GENERATE_MODEL):
        info = read_pipeline(shipped_model(name))
        assert os.path.isabs(info.vae) and os.path.isdir(info.vae)


def test_missing_shipped_weights_say_how_to_get_them(tmp_path, monkeypatch):
    import s2dit.shipped

    monkeypatch.setattr(s2dit.shipped, "WEIGHTS", tmp_path / "weights")
    with pytest.raises(S2DitError, match=r"pip install -e \.\); install it that way, or pass --checkpoint"):
        s2dit.shipped.shipped_model("micro_ar")

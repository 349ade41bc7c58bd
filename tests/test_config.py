import dataclasses

import pytest
import yaml

from s2dit.config import (
    VideoSpec,
    apply_overrides,
    describe_changes,
    from_dict,
    load_config,
    parse_size,
    save_config,
    to_dict,
)
from s2dit.data.micro.writer import MicroWorldConfig
from s2dit.errors import ConfigError


@dataclasses.dataclass
class Inner:
    width: int = 8
    ratio: float = 0.5
    name: str = "a"
    flag: bool = False
    tags: list[str] = dataclasses.field(default_factory=list)
    maybe: int | None = None


@dataclasses.dataclass
class Outer:
    inner: Inner = dataclasses.field(default_factory=Inner)
    video: VideoSpec = dataclasses.field(default_factory=VideoSpec)
    steps: int = 1


def test_defaults_yaml_and_overrides_compose(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  width: 16\n  name: b\nsteps: 3\n")
    cfg = load_config(Outer, path, ["inner.width=32", "inner.ratio=1", "inner.tags=[x, y]", "video.fps=8"])
    assert cfg.inner == Inner(width=32, ratio=1.0, name="b", tags=["x", "y"])
    assert isinstance(cfg.inner.ratio, float)
    assert cfg.steps == 3 and cfg.video.fps == 8.0 and cfg.video.width == 256


def test_exponent_floats_without_a_dot_are_floats(tmp_path):
    """YAML 1.1 reads ``1e-4`` as a string: a float field still takes it, from a file or ``--set``."""
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  ratio: 3e-4\n")
    assert load_config(Outer, path).inner.ratio == 3e-4
    assert load_config(Outer, None, ["inner.ratio=1e-9"]).inner.ratio == 1e-9
    assert load_config(Outer, None, ["inner.ratio=-2E+3"]).inner.ratio == -2000.0
    with pytest.raises(ConfigError, match="expected float, got str '1e'"):
        load_config(Outer, None, ["inner.ratio=1e"])
    with pytest.raises(ConfigError, match="expected int, got str '1e3'"):
        load_config(Outer, None, ["inner.width=1e3"])  # int fields stay strict


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config(Outer, None, ["inner.maybe=4", "video.frames=17"])
    save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(Outer, tmp_path / "resolved.yaml") == cfg
    assert yaml.safe_load((tmp_path / "resolved.yaml").read_text()) == to_dict(cfg)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["inner.widht=3"], "unknown key 'inner.widht' (did you mean 'inner.width'?)"),
        (["nothing=3"], "unknown key 'nothing'"),
        (["inner.width=abc"], "inner.width: expected int, got str 'abc'"),
        (["inner.width=1.5"], "inner.width: expected int, got float 1.5"),
        (["inner.ratio=fast"], "inner.ratio: expected float, got str 'fast'"),
        (["inner.flag=3"], "inner.flag: expected true/false"),
        (["inner.tags=5"], "inner.tags: expected a list"),
        (["steps=true"], "steps: expected int, got bool"),
        (["video.width=250"], "video.width: 250 is not a positive multiple of 16"),
        (["video.height=0"], "video.height: 0 is not a positive multiple of 16"),
        (["video.frames=32"], "video.frames: 32 is not of the form 4k+1 (nearest: 29 or 33)"),
        (["video.fps=0"], "video.fps: 0.0 must be positive"),
        (["steps"], "should look like key.sub=value"),
        (["steps.x=1"], "steps: expected int, got dict"),
    ],
)
def test_validation_errors_are_one_line(overrides, message):
    with pytest.raises(ConfigError) as e:
        load_config(Outer, None, overrides)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Outer, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(Outer, bad)
    bad.write_text("inner: [unclosed\n")
    with pytest.raises(ConfigError, match="not a readable YAML file"):
        load_config(Outer, bad)


def test_overrides_do_not_mutate_input():
    data = {"inner": {"width": 1}}
    apply_overrides(data, ["inner.width=2"])
    assert data == {"inner": {"width": 1}}


def test_parse_size():
    assert parse_size("256x144") == (256, 144)
    assert parse_size("144X256") == (144, 256)
    for bad in ("256", "256x", "ax144", "1x2x3"):
        with pytest.raises(ConfigError, match="WIDTHxHEIGHT"):
            parse_size(bad)


def test_video_spec_latent_frames():
    assert VideoSpec(frames=33).latent_frames == 9
    assert VideoSpec(frames=81).latent_frames == 21
    assert VideoSpec(frames=1).latent_frames == 1


def test_describe_changes_lists_dotted_keys():
    a, b = Outer(), load_config(Outer, None, ["video.fps=8", "steps=2"])
    assert describe_changes(a, b) == "steps: 1 -> 2, video.fps: 16.0 -> 8.0"


def test_shipped_micro_world_yaml_equals_the_defaults(repo_root):
    assert load_config(MicroWorldConfig, repo_root / "configs" / "micro_world.yaml") == MicroWorldConfig()


def test_micro_world_config_rules():
    with pytest.raises(ConfigError, match="min_objects"):
        from_dict(MicroWorldConfig, {"min_objects": 3, "max_objects": 2})
    with pytest.raises(ConfigError, match="crf"):
        from_dict(MicroWorldConfig, {"crf": 60})


@pytest.mark.parametrize(
    "data, message",
    [
        ({"max_objects": 4}, "max_objects (4) <= 3"),
        ({"seed": -1}, "seed: -1 must be >= 0"),
        ({"video": {"fps": float("nan")}}, "video.fps: nan must be positive"),
    ],
)
def test_micro_world_values_that_would_crash_later_are_refused(data, message):
    with pytest.raises(ConfigError) as e:
        from_dict(MicroWorldConfig, data)
    assert message in str(e.value)


@pytest.mark.parametrize(
    "name, loader",
    [
        ("micro_world.yaml", "s2dit.data.micro.writer:MicroWorldConfig"),
        ("micro_vae.yaml", "s2dit.train.vae:AETrainConfig"),
        ("small_wan_vae.yaml", "s2dit.train.vae:AETrainConfig"),
        ("fast_decoder.yaml", "s2dit.train.decoder:DecoderTrainConfig"),
        ("micro_vae_robust.yaml", "s2dit.train.decoder:DecoderTrainConfig"),
        ("micro_teacher.yaml", "s2dit.train.config:TrainConfig"),
        ("micro_s2dit.yaml", "s2dit.train.config:TrainConfig"),
    ],
)
def test_every_shipped_config_loads_and_builds(repo_root, name, loader):
    import importlib

    from s2dit.config import load_config

    module, cls = loader.split(":")
    cfg = load_config(getattr(importlib.import_module(module), cls), repo_root / "configs" / name, [])
    if name in ("micro_teacher.yaml", "micro_s2dit.yaml"):
        from s2dit.model.denoiser import build_denoiser, resolve_spec

        model = build_denoiser(resolve_spec(cfg.model))
        params = sum(p.numel() for p in model.parameters())
        assert 2e6 < params < 3e7, params  # micro-sized

"""Property tests: whatever a file or a config holds, the readers give a result or one S2DitError.

Hypothesis generates the inputs (random bytes, damaged copies of valid files, random nested config data and
``--set`` strings); the property is that nothing else escapes: no parser traceback, no TypeError from a value
of the wrong type deep inside, no hang (each example runs under hypothesis' deadline-free budget, bounded in
count).
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from s2dit.config import apply_overrides, from_dict
from s2dit.data.micro.writer import MicroWorldConfig
from s2dit.diffusion.pipeline import PipelineInfo
from s2dit.errors import S2DitError
from s2dit.export.manifest import Manifest
from s2dit.files import load_safetensors, read_json, read_yaml
from s2dit.model.config import ModelConfig
from s2dit.search.latency import LatencyTable
from s2dit.train.config import TrainConfig

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
json_like = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def refused_or_read(read, *args):
    """Call ``read``; an S2DitError is an answer too. Anything else propagates and fails the test."""
    try:
        return read(*args)
    except S2DitError as e:
        assert str(e) and "\n" not in str(e).strip(), repr(e)  # one line
        return None


def write(data: bytes) -> Path:
    with tempfile.NamedTemporaryFile(delete=False, suffix=".bin") as handle:
        handle.write(data)
    return Path(handle.name)


@SETTINGS
@given(st.binary(max_size=300))
def test_any_bytes_read_as_yaml_json_or_safetensors_give_content_or_one_error(data):
    path = write(data)
    try:
        assert isinstance(refused_or_read(read_yaml, path), dict | None)
        refused_or_read(read_json, path)
        refused_or_read(load_safetensors, path)
    finally:
        path.unlink()


VALID = Path(tempfile.mkdtemp()) / "valid.safetensors"
save_file({"w": torch.arange(24.0).reshape(4, 6), "i": torch.arange(5)}, str(VALID))


@SETTINGS
@given(
    st.integers(0, VALID.stat().st_size),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
)
def test_a_truncated_or_bit_flipped_safetensors_file_gives_tensors_or_one_error(cut, flips):
    data = bytearray(VALID.read_bytes()[:cut])
    for where, value in flips:
        if where < len(data):
            data[where] = value
    path = write(bytes(data))
    try:
        state = refused_or_read(load_safetensors, path)
        assert state is None or all(isinstance(t, torch.Tensor) for t in state.values())
    finally:
        path.unlink()


@SETTINGS
@given(
    st.sampled_from([ModelConfig, MicroWorldConfig, TrainConfig, PipelineInfo]),
    st.dictionaries(st.text(max_size=10), json_like, max_size=5),
)
def test_any_nested_data_builds_a_config_or_one_config_error(cls, data):
    refused_or_read(from_dict, cls, data)


FIELDS = ["layout", "width", "heads", "ffn_dim", "text_dim", "conv_kernel", "rope_theta", "freq_dim"]


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(FIELDS), st.text(max_size=12)), max_size=4))
def test_any_set_overrides_give_a_config_or_one_error(pairs):
    """``--set key=value`` strings: values parse as YAML scalars, the result is type-checked."""
    overrides = [f"{k}={v}" for k, v in pairs]
    data = refused_or_read(apply_overrides, {}, overrides)
    if data is not None:
        refused_or_read(from_dict, ModelConfig, data)


def table() -> dict:
    entries = [
        {"kind": kind, "tokens": tokens, "pass": "forward", "ms": ms * tokens / 256}
        for tokens in (256, 1024)
        for kind, ms in (("L", 2.0), ("S", 0.5), ("stage_down", 0.1), ("stage_up", 0.2))
    ]
    return {
        "schema": "s2dit.latency/1",
        "device": "x",
        "dtype": "float32",
        "width": 32,
        "heads": 2,
        "entries": entries,
    }


@SETTINGS
@given(st.integers(0, 7), st.sampled_from(["kind", "tokens", "pass", "ms"]), json_like)
def test_a_latency_table_with_any_value_in_any_entry_loads_or_is_one_error(i, key, value):
    data = copy.deepcopy(table())
    data["entries"][i][key] = value
    loaded = refused_or_read(LatencyTable, data)
    if loaded is not None:
        cost = refused_or_read(loaded.cost, "L", 512)
        assert cost is None or 0 < cost < float("inf")


def manifest() -> dict:
    spec = {"name": "x", "shape": [1, 16, 1, 6, 8], "dtype": "float32"}
    return {
        "runtime": "onnx",
        "checkpoint": "c",
        "latent_size": [6, 8],
        "video_size": [64, 48],
        "channels": 16,
        "text_len": 8,
        "text_dim": 16,
        "text_encoder": "hashed",
        "fps": 4.0,
        "stream": {"steps": 2},
        "entry_points": {"denoise": {"file": "d.onnx", "sha256": "0", "inputs": [spec], "outputs": [spec]}},
        "precision": "float32",
        "schema": "s2dit.export/1",
    }


@SETTINGS
@given(st.sampled_from(sorted(manifest())), json_like)
def test_a_manifest_with_any_value_in_any_field_reads_or_is_one_error(key, value):
    data = manifest()
    data[key] = value
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "manifest.json").write_text(json.dumps(data))
        refused_or_read(Manifest.read, folder)

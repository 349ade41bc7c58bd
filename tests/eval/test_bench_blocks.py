import json
import subprocess
import sys

import pytest

from s2dit.errors import S2DitError
from s2dit.eval.bench_blocks import KINDS, SCHEMA, run_bench, summary_rows


def test_bench_table_has_every_kind_pass_and_token_count():
    table = run_bench(width=32, heads=2, tokens=[128, 256], repeats=1, text_tokens=4, progress=False)
    assert table["schema"] == SCHEMA and table["dtype"] == "float32" and table["width"] == 32
    keys = {(e["kind"], e["tokens"], e["pass"]) for e in table["entries"]}
    assert keys == {(k, n, p) for k in KINDS for n in (128, 256) for p in ("forward", "forward_backward")}
    for e in table["entries"]:
        assert e["ms"] > 0 and e["ms_min"] <= e["ms"]
        frames, rows, cols = e["grid"]
        coarse = e["kind"] in ("S", "stage_up")
        assert frames * rows * cols == (e["tokens"] // 4 if coarse else e["tokens"])
    rows = summary_rows(table)
    assert [r[0] for r in rows] == [128, 256] and len(rows[0]) == 1 + len(KINDS) + 4


def test_the_2d_conv_form_is_timed_when_asked(monkeypatch):
    from s2dit.ops import causal_conv

    used = []
    real = causal_conv.causal_depthwise_conv3d_2d

    def spy(*args):
        used.append(True)
        return real(*args)

    monkeypatch.setattr(causal_conv, "causal_depthwise_conv3d_2d", spy)
    table = run_bench(width=32, heads=2, tokens=[128], repeats=1, kinds=("L",), conv="2d", progress=False)
    assert table["conv"] == "2d" and used
    assert (
        run_bench(width=32, heads=2, tokens=[128], repeats=1, kinds=("L",), progress=False)["conv"] == "auto"
    )


@pytest.mark.slow
def test_compiled_bench_runs_every_entry_through_torch_compile():
    import torch

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    table = run_bench(
        width=32,
        heads=2,
        tokens=[128, 256],
        repeats=1,
        kinds=("L_floor",),
        backward=False,
        compiled=True,
        progress=False,
    )
    assert table["compiled"] is True and len(table["entries"]) == 2
    # one graph per token count, none falling back to eager
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tokens": [100]}, "multiple of 128"),
        ({"dtype": "int8"}, "dtype"),
        ({"width": 30, "heads": 4}, "heads"),
        ({"device": "cuda"}, "CUDA"),
        ({"kinds": ("X",)}, "unknown kinds"),
        ({"conv": "1d"}, "conv"),
    ],
)
def test_bench_refuses_bad_arguments(kwargs, message):
    import torch

    if kwargs.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(S2DitError, match=message):
        run_bench(**{"width": 32, "heads": 2, "tokens": [128], **kwargs})


def test_bench_command_writes_json(tmp_path):
    out = tmp_path / "lat.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "s2dit.cli",
            "bench",
            "blocks",
            "--width",
            "32",
            "--heads",
            "2",
            "--tokens",
            "128",
            "--repeats",
            "1",
            "--no-backward",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "L/floor" in result.stdout
    table = json.loads(out.read_text())
    assert {e["pass"] for e in table["entries"]} == {"forward"} and len(table["entries"]) == len(KINDS)

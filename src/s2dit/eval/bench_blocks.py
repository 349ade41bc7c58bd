"""``s2dit bench blocks``: time one block of each kind, the stage entry/exit, and LCHA's floor.

For each token count N (full-resolution tokens of a clip, laid out as 4 latent frames of 16 × N/64
tokens) it times, forward and forward+backward, batch 1:

* ``L``: a LinConv hybrid attention block over N tokens;
* ``L_floor``: the same block with the token mixing removed (QKV and output projections, cross-attention
  and FFN kept): the bound no ``L`` can beat;
* ``F``: a full softmax-attention block over N tokens;
* ``S``: a stride self-attention block on the 2×2 coarse grid (N/4 tokens);
* ``stage_down`` / ``stage_up``: entering and leaving a low-resolution stage.

The JSON it writes is the latency table the layout search reads (schema ``s2dit.latency/1``): device,
dtype, widths and one entry per (kind, tokens, pass) with the median and minimum time in milliseconds.
"""

from __future__ import annotations

import platform
import statistics
import time

import torch
from torch import nn

from s2dit.errors import S2DitError
from s2dit.model.blocks import Block
from s2dit.model.rope import RoPE3D
from s2dit.model.ssa import StageDown, StageUp, coarse_grid

SCHEMA = "s2dit.latency/1"
KINDS = ("L", "L_floor", "F", "S", "stage_down", "stage_up")
FRAMES, ROWS = 4, 16
GRID_NOTE = (
    "tokens: full-resolution tokens, laid out as 4 frames x 16 rows x tokens/64 columns; "
    "S and stage_up run on the 2x2 coarse grid of that layout"
)


class FloorMixer(nn.Module):
    """LCHA with its token mixing removed: the QKV and output projections only."""

    def __init__(self, dim: int):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor, *args) -> torch.Tensor:
        return self.out(self.qkv(h).chunk(3, dim=-1)[2])


def bench_grid(tokens: int) -> tuple[int, int, int]:
    if tokens < 128 or tokens % 128:
        raise S2DitError(f"--tokens: {tokens} is not a positive multiple of 128")
    return FRAMES, ROWS, tokens // (FRAMES * ROWS)


def _make_call(m, kind, full, n, width, rope, text, dev, dt, compiled=False):
    """``(forward, forward+backward, grid)`` closures for one module at one token count; ``compiled``:
    the module's call goes through ``torch.compile`` (fused elementwise kernels, forward and backward)."""
    grid = coarse_grid(full) if kind in ("S", "stage_up") else full
    x0 = torch.randn(1, grid[0] * grid[1] * grid[2], width, device=dev, dtype=dt)
    if kind in ("stage_down", "stage_up"):
        skip = torch.randn(1, n, width, device=dev, dtype=dt)

        def call(x=x0):
            return m(x, full) if kind == "stage_down" else m(x, skip, full)

    else:
        tables = rope(*grid)  # float32, as in the model
        modulation = torch.randn(1, grid[0], 6, width, device=dev, dtype=dt) * 0.1
        with torch.no_grad():
            text_kv = m.cross.text_kv(text)
        if kind.startswith("L"):
            mix = lambda h: m.mixer(h, tables, grid, None)  # noqa: E731
        else:
            mix = lambda h: m.mixer(h, tables, None)  # noqa: E731

        def call(x=x0):
            return m(x, modulation, text_kv, None, mix)

    if compiled:
        call = torch.compile(call, dynamic=False)
    x_grad = x0.clone().requires_grad_(True)

    def step():
        m.zero_grad(set_to_none=True)
        call(x_grad).float().sum().backward()

    return call, step, grid


def _interleaved(fns: dict, repeats: int, sync, grad: bool) -> dict[str, list[float]]:
    """Time each function once per round, round after round, so that drifts hit every kind alike."""
    times = {k: [] for k in fns}
    ctx = torch.enable_grad if grad else torch.inference_mode
    with ctx():
        for fn in fns.values():  # warm-up
            fn()
        sync()
        for _ in range(repeats):
            for k, fn in fns.items():
                start = time.perf_counter()
                fn()
                sync()
                times[k].append((time.perf_counter() - start) * 1000)
    return times


def run_bench(
    *,
    width: int = 384,
    heads: int = 6,
    ffn_mult: int = 4,
    tokens: list[int],
    device: str = "cpu",
    dtype: str = "float32",
    text_tokens: int = 64,
    repeats: int = 3,
    backward: bool = True,
    kinds: tuple[str, ...] = KINDS,
    conv: str = "auto",
    compiled: bool = False,
    progress: bool = True,
) -> dict:
    """Time every kind at every token count; returns the latency table (see the module docstring).
    ``conv``: LCHA's conv branch as the model runs it ("auto": 3D on CPUs, 2D per tap on GPUs), or forced
    to one 3D depthwise convolution ("3d") or 2D ones per tap ("2d"). ``compiled``: every kind runs
    through ``torch.compile`` (eager otherwise); compilation happens in the untimed warm-up."""
    if device == "cuda" and not torch.cuda.is_available():
        raise S2DitError("--device cuda: no CUDA device is available")
    dt = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)
    if dt is None:
        raise S2DitError(f"--dtype: {dtype!r} is not one of float32, bfloat16, float16")
    if width % heads or (width // heads) % 2:
        raise S2DitError(f"--width {width} must split into {heads} heads of even size")
    if conv not in ("auto", "3d", "2d"):
        raise S2DitError(f"--conv {conv!r}: choose auto, 3d or 2d")
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise S2DitError(f"unknown kinds {sorted(unknown)} (choose from {', '.join(KINDS)})")
    grids = {n: bench_grid(n) for n in tokens}
    if compiled:
        # One compiled graph per (kind, size, grad mode), all from the same closure: more than dynamo's
        # default limit of 8, past which it silently falls back to eager.
        torch._dynamo.config.recompile_limit = 4 * len(kinds) * len(tokens)
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    rope = RoPE3D(width // heads).to(dev)
    modules = {
        "L": Block("L", width, heads, ffn_mult * width),
        "L_floor": Block("L", width, heads, ffn_mult * width),
        "F": Block("F", width, heads, ffn_mult * width),
        "S": Block("S", width, heads, ffn_mult * width),
        "stage_down": StageDown(width),
        "stage_up": StageUp(width),
    }
    modules["L_floor"].mixer = FloorMixer(width)
    if conv != "auto":
        from s2dit.ops import causal_conv

        forced = (
            causal_conv.causal_depthwise_conv3d_2d if conv == "2d" else causal_conv.causal_depthwise_conv3d_3d
        )
        modules["L"].mixer.conv_op = forced
    for m in modules.values():
        m.to(device=dev, dtype=dt)
    text = torch.randn(1, text_tokens, width, device=dev, dtype=dt)

    from tqdm import tqdm

    entries = []
    for n in tqdm(tokens, desc="bench blocks", unit="size", disable=not progress):
        calls = {
            kind: _make_call(modules[kind], kind, grids[n], n, width, rope, text, dev, dt, compiled)
            for kind in kinds
        }
        passes = {"forward": {k: c[0] for k, c in calls.items()}}
        if backward:
            passes["forward_backward"] = {k: c[1] for k, c in calls.items()}
        for pass_, fns in passes.items():
            times = _interleaved(fns, repeats, sync, grad=pass_ != "forward")
            for kind in kinds:
                entries.append(_entry(kind, n, calls[kind][2], pass_, times[kind]))
    return {
        "schema": SCHEMA,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({platform.machine()})",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "dtype": dtype,
        "conv": conv,
        "compiled": compiled,
        "width": width,
        "heads": heads,
        "ffn_dim": ffn_mult * width,
        "text_tokens": text_tokens,
        "grid": GRID_NOTE,
        "entries": entries,
    }


def _entry(kind: str, tokens: int, grid, pass_: str, times: list[float]) -> dict:
    return {
        "kind": kind,
        "tokens": tokens,
        "grid": list(grid),
        "pass": pass_,
        "ms": statistics.median(times),
        "ms_min": min(times),
        "repeats": len(times),
    }


def summary_rows(table: dict, pass_: str = "forward") -> list[tuple]:
    """Rows ``(tokens, L, L_floor, F, S, down, up, F/L, L/F, S/F, L/floor)`` in ms and ratios."""
    ms = {(e["kind"], e["tokens"]): e["ms"] for e in table["entries"] if e["pass"] == pass_}
    rows = []
    for n in sorted({e["tokens"] for e in table["entries"]}):
        get = lambda k, n=n: ms.get((k, n))  # noqa: E731
        ratio = lambda a, b: f"{a / b:.2f}" if a and b else "-"  # noqa: E731
        rows.append(
            (
                n,
                *(f"{get(k):.2f}" if get(k) else "-" for k in KINDS),
                ratio(get("F"), get("L")),
                ratio(get("L"), get("F")),
                ratio(get("S"), get("F")),
                ratio(get("L"), get("L_floor")),
            )
        )
    return rows

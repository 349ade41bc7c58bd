import dataclasses
import json
import os
import re
import subprocess
import sys
import urllib.request

import pytest
import yaml

from s2dit.cli import app
from s2dit.config import from_dict
from s2dit.data.micro.writer import MicroWorldConfig


def s2dit(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "s2dit.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _commands(typer_app, prefix=""):
    """Every leaf command path of the CLI, e.g. ['data micro', 'data inspect', 'eval micro']."""
    out = [f"{prefix}{c.name}".strip() for c in typer_app.registered_commands]
    for group in typer_app.registered_groups:
        out += _commands(group.typer_instance, f"{prefix}{group.name} ")
    return out


def test_help_lists_every_command_with_a_purpose():
    top = s2dit("--help").stdout
    assert re.search(r"data\s+Make and inspect datasets", top)
    assert re.search(r"eval\s+Score generated videos", top)
    assert re.search(r"micro\s+Generate a procedural", s2dit("data", "--help").stdout)
    assert re.search(r"inspect\s+Print clip counts", s2dit("data", "--help").stdout)
    assert re.search(r"micro\s+Score videos against", s2dit("eval", "--help").stdout)
    assert re.search(r"info\s+Print parameters and FLOPs", s2dit("model", "--help").stdout)
    assert re.search(r"ship\s+Copy a trained model into weights/", s2dit("model", "--help").stdout)
    assert re.search(r"check\s+Sample a few held-out prompts", s2dit("model", "--help").stdout)
    assert re.search(r"experts\s+Join two Wan models", s2dit("model", "--help").stdout)
    assert re.search(r"blocks\s+Time one block of each kind", s2dit("bench", "--help").stdout)
    assert re.search(r"vae\s+Train an autoencoder", s2dit("train", "--help").stdout)
    assert re.search(r"generate\s+Generate a video bidirectionally", top)
    assert re.search(r"train\s+Training throughput: float32 eager beside", s2dit("bench", "--help").stdout)
    assert re.search(r"stream\s+Streaming FPS, first-chunk", s2dit("bench", "--help").stdout)
    assert re.search(r"stream\s+Stream a video chunk by chunk", top)
    assert re.search(r"serve\s+Serve a local web page", top)
    assert re.search(r"search\s+Budget-aware layout search", top)
    assert re.search(r"sweep\s+Sweep budgets", s2dit("search", "--help").stdout)
    expected = (
        "bench blocks, bench export, bench stream, bench train, data encode, data inspect, data micro, "
        "distill cache, eval micro, eval model, eval streams, "
        "eval vae, export coreml, export executorch, export onnx, export run, generate, model check, "
        "model experts, model info, "
        "model ship, "
        "search layout, search supernet, search sweep, serve, stream, "
        "train decoder, train vae"
    )
    assert sorted(_commands(app)) == expected.split(", ")


def test_readme_names_every_command(repo_root):
    readme = (repo_root / "README.md").read_text()
    for command in _commands(app):
        assert f"s2dit {command}" in readme


def test_make_inspect_and_score_a_world(tmp_path):
    out = tmp_path / "world"
    make = ["data", "micro", "--out", str(out), "--n", "6", "--size", "128x80", "--frames", "9"]
    make += ["--seed", "4", "--set", "max_objects=2"]
    s2dit(*make)
    cfg = from_dict(MicroWorldConfig, yaml.safe_load((out / "config.yaml").read_text()))
    assert (cfg.video.width, cfg.video.height, cfg.video.frames) == (128, 80, 9)
    assert (cfg.seed, cfg.max_objects) == (4, 2)
    assert len((out / "clips.jsonl").read_text().splitlines()) == 6
    assert "0 made" in s2dit(*make).stdout  # a rerun finds everything done

    inspected = s2dit("data", "inspect", str(out), "--clips", "3").stdout
    assert "6 clips" in inspected and "objects per clip" in inspected and "motion" in inspected
    assert (out / "inspect.png").stat().st_size > 1000

    scored = s2dit(
        "eval",
        "micro",
        "--videos",
        str(out),
        "--prompts",
        str(out / "clips.jsonl"),
        "--json",
        str(tmp_path / "r.json"),
    ).stdout
    assert "pass rate" in scored and "mean accuracy" in scored
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["clips"] == 6 and len(report["per_clip"]) == 6 and report["pass_rate"] >= 0.8
    assert report["accuracy"]["size"] >= 0.9


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["data", "micro", "--out", "X", "--size", "250x144"],
            "video.width: 250 is not a positive multiple of 16",
        ),
        (["data", "micro", "--out", "X", "--size", "big"], "should look like WIDTHxHEIGHT"),
        (["data", "micro", "--out", "X", "--frames", "32"], "video.frames: 32 is not of the form 4k+1"),
        (["data", "micro", "--out", "X", "--set", "video.fsp=8"], "did you mean 'video.fps'?"),
        (["data", "micro", "--out", "X", "--set", "seed=abc"], "seed: expected int"),
        (["data", "micro", "--out", "X", "--config", "missing.yaml"], "config file not found"),
        (["data", "micro", "--out", "X", "--n", "0"], "--n must be at least 1"),
        (["data", "inspect", "nowhere"], "folder not found"),
        (["model", "info", "--preset", "huge"], "unknown preset 'huge'"),
        (["model", "info", "--layout", "LQ"], "layout: 'LQ' must be"),
        (["model", "info", "--size", "250x144"], "--size: 250 is not a positive multiple of 16"),
        (["model", "info", "--frames", "30"], "frames: 30 is not of the form 4k+1"),
        (["eval", "micro", "--videos", "nowhere", "--prompts", "p.txt"], "videos folder not found"),
        (["train", "--set", "steps=3"], "s2dit train needs --config FILE"),
        (["train", "--config", "missing.yaml"], "config file not found"),
        (["generate", "a red circle", "--checkpoint", "nowhere"], "does not exist"),
        (["bench", "train", "--model", "huge"], "unknown model 'huge'"),
        (["bench", "train", "--dtype", "int8"], "--dtype 'int8'"),
        (["bench", "stream", "--preset", "huge"], "unknown preset 'huge'"),
        (["bench", "stream", "--chunks", "0"], "--chunks"),
        (["stream", "a red ball", "--checkpoint", "nowhere"], "does not exist"),
        (["serve", "--port", "70000", "--random-weights"], "--port must be"),
        (["serve", "--checkpoint", "nowhere"], "does not exist"),
        (["serve", "--checkpoint", "nowhere", "--random-weights"], "not both"),
        (
            [
                "search",
                "layout",
                "--latency",
                "nowhere",
                "--quality",
                "q",
                "--budget-ms",
                "5",
                "--depth",
                "4",
                "--tokens",
                "432",
            ],
            "latency table",
        ),
        (["search", "supernet", "--latents", "nowhere", "--kinds", "LQ"], "kinds: 'LQ'"),
    ],
)
def test_user_errors_are_one_line_with_status_2(tmp_path, args, message):
    args = [str(tmp_path / a) if a in ("X", "missing.yaml", "nowhere", "p.txt") else a for a in args]
    result = s2dit(*args, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_an_unknown_training_method_is_one_line_and_writes_nothing(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"method: consistency\nout: {tmp_path / 'run'}\n")
    result = s2dit("train", "--config", str(config), check=False)
    message = "error: method: 'consistency' must be one of flow_matching, kd, causal_ode, dmd"
    assert result.returncode == 2 and result.stderr.strip() == message, result.stderr
    assert not (tmp_path / "run").exists()


# What s2dit itself writes on stderr: error and warning lines, and the progress bars of the commands run
# below (tqdm: "DESC:  42%|####  | ..."). Anything else is a library talking on its own.
OUR_BARS = ("streaming", "sampling", "scoring")
OUR_STDERR = re.compile(rf"^(error|warning): |^({'|'.join(OUR_BARS)}): +\d+%\|")


def foreign_stderr(stderr: str) -> list[str]:
    """The stderr lines (tqdm redraws split on carriage returns) that s2dit did not write."""
    lines = (line.strip() for line in re.split(r"[\r\n]+", stderr))
    return [line for line in lines if line and not OUR_STDERR.match(line)]


def run_elsewhere(cwd, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """The installed s2dit, run from ``cwd`` (not the repository) with a clean environment."""
    env = {"COLUMNS": "200", "PATH": "/usr/bin:/bin"}
    env |= {k: os.environ[k] for k in ("OMP_NUM_THREADS",) if k in os.environ}
    bin_dir = os.path.dirname(sys.executable)
    cmd = [f"{bin_dir}/s2dit", *args]
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_main_jobs_use_the_shipped_models_from_any_directory_and_stay_quiet(tmp_path):
    """stream, generate and eval micro with no model flag, run outside the repository: they work, and
    stderr holds only our own lines (no torchao, torch pytree or transformers loading noise)."""
    prompt = "a large red circle moving right on a white background"
    streamed = run_elsewhere(tmp_path, "stream", prompt, "--seconds", "1", "-o", "out/s.mp4")
    assert re.search(r"first chunk \d+\.\d+ s; \d+\.\d+ FPS end to end", streamed.stdout)
    assert (tmp_path / "out" / "s.mp4").stat().st_size > 0 and (tmp_path / "out" / "s.gif").stat().st_size > 0
    assert "preview: out/s.gif" in streamed.stdout
    generated = run_elsewhere(tmp_path, "generate", prompt, "--steps", "2", "-o", "gen/g.mp4")
    assert "wrote gen/g.mp4" in generated.stdout and (tmp_path / "gen" / "g.png").exists()
    (tmp_path / "prompts.txt").write_text(prompt + "\n")
    scored = run_elsewhere(tmp_path, "eval", "micro", "--videos", "gen", "--prompts", "prompts.txt")
    assert "pass rate" in scored.stdout
    for result in (streamed, generated, scored):
        assert foreign_stderr(result.stderr) == [], result.stderr[-3000:]
    assert "streaming:" in streamed.stderr and "sampling:" in generated.stderr  # our bars stay
    verbose = run_elsewhere(
        tmp_path, "--verbose", "eval", "micro", "--videos", "gen", "--prompts", "prompts.txt"
    )
    assert "pass rate" in verbose.stdout


def test_our_warnings_are_one_line_and_libraries_are_hidden(capsys):
    import s2dit.cli
    from s2dit.quiet import _show_our_warnings

    _show_our_warnings(UserWarning("no contact sheet"), UserWarning, s2dit.cli.__file__, 1)
    _show_our_warnings(FutureWarning("deprecated"), FutureWarning, json.__file__, 1)
    assert capsys.readouterr().err == "warning: no contact sheet\n"


def test_serve_defaults_to_the_shipped_model_and_its_page_says_what_it_draws(tmp_path):
    bin_dir = os.path.dirname(sys.executable)
    env = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    env |= {k: os.environ[k] for k in ("OMP_NUM_THREADS",) if k in os.environ}
    proc = subprocess.Popen(
        [f"{bin_dir}/s2dit", "serve", "--port", "0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()  # printed once the model is loaded and the port is open
        url = re.search(r"live viewer at (\S+)", line)
        assert url, line + proc.stderr.read() if proc.poll() is not None else line
        page = urllib.request.urlopen(url.group(1), timeout=30).read().decode()
        assert "The micro world, which the shipped models draw" in page and "triangle" in page
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_micro_prompts_warn_in_one_line_what_the_world_cannot_draw(tmp_path, capsys):
    from s2dit.cli.common import warn_unknown_words

    micro, wan = tmp_path / "micro", tmp_path / "wan"
    micro.mkdir()
    wan.mkdir()
    (micro / "pipeline.yaml").write_text("text: minilm\n")
    (wan / "pipeline.yaml").write_text(f"text: {tmp_path / 'umt5'}\n")
    warn_unknown_words(["a red ball moving left", "a brown hexagon spinning", "a blue box"], micro)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "warning: the micro world does not know 'brown', 'hexagon'"
    )
    warn_unknown_words(["a cat playing the piano"], wan)  # not a micro-world model: no warning
    warn_unknown_words(["a cat playing the piano"], None)  # random weights
    assert capsys.readouterr().err == ""


def test_model_info_prints_parameters_and_flops_by_kind():
    out = s2dit("model", "info", "--preset", "micro", "--layout", "LSF").stdout
    assert "micro (LSF)" in out and "parameters" in out and "GFLOPs per latent frame" in out
    for part in ("L", "S", "F", "stages", "total"):
        assert re.search(rf"\b{part}\b", out)


def test_core_modules_import_without_video_or_text_packages():
    """The model, benchmarks and CLI run on lean machines: no PyAV, Pillow, scipy or diffusers at import."""
    code = (
        "import sys; import s2dit.cli, s2dit.model.transformer, s2dit.model.flops, s2dit.eval.bench_blocks, "
        "s2dit.model.init, s2dit.config, s2dit.latent.text, s2dit.latent.wan_vae, s2dit.latent.tiny_ae, "
        "s2dit.train.trainer, s2dit.diffusion.sampling, s2dit.diffusion.pipeline, s2dit.eval.bench_train, "
        "s2dit.model.denoiser, s2dit.diffusion.streaming, s2dit.diffusion.stream_pipeline, "
        "s2dit.eval.bench_stream, s2dit.serve.server; "
        "print(sorted(m for m in ('av', 'PIL', 'scipy', 'diffusers', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@dataclasses.dataclass
class _Settings:
    name: str = ""
    steps: int = 3
    scale: float | None = None
    tags: list[str] = dataclasses.field(default_factory=lambda: ["a"])

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError("steps must be at least 1")


def test_config_options_build_the_config_from_options_typed_and_defaulted_by_its_fields():
    """The options are the fields (type and default read from the dataclass), the command receives the
    built config and its own options, and a required field has no default."""
    import typer
    from typer.testing import CliRunner

    from s2dit.cli.common import config_options

    got = []
    demo = typer.Typer()

    @demo.command()
    @config_options(_Settings, {"name": "A name.", "steps": "Steps.", "scale": "Scale."}, required=("name",))
    def run(config: _Settings, loud: bool = typer.Option(False, help="Louder.")) -> None:
        got.append((config, loud))

    runner = CliRunner()
    assert runner.invoke(demo, ["--name", "x"]).exit_code == 0
    assert runner.invoke(demo, ["--name", "y", "--steps", "7", "--scale", "0.5", "--loud"]).exit_code == 0
    assert got == [(_Settings("x"), False), (_Settings("y", 7, 0.5), True)]
    assert runner.invoke(demo, []).exit_code == 2  # --name is required
    assert runner.invoke(demo, ["--name", "x", "--steps", "two"]).exit_code == 2  # typed from the field
    assert "--tags" not in runner.invoke(demo, ["--help"]).output  # only the fields given help


@pytest.mark.parametrize(
    "group, name, module, helps, config, required",
    [
        ("distill", "cache", "s2dit.cli.distill", "CACHE_HELP", "CacheConfig", ("teacher", "prompts")),
        ("search", "supernet", "s2dit.cli.search", "SUPERNET_HELP", "SupernetConfig", ("latents",)),
    ],
)
def test_config_built_commands_take_the_config_defaults(group, name, module, helps, config, required):
    import importlib

    import typer

    cli = importlib.import_module(module)
    helps, config = getattr(cli, helps), getattr(cli, config)
    command = typer.main.get_command(app).commands[group].commands[name]
    params = {p.name: p for p in command.params}
    want = config()
    for field in helps:
        param = params[{"batch_size": "batch"}.get(field, field)]
        assert param.required if field in required else param.default == getattr(want, field), field


def test_the_command_line_starts_without_torch():
    """Every command's options are built at start-up: their config modules must not import torch."""
    code = "import sys, s2dit.cli; from s2dit.cli import app; import typer; typer.main.get_command(app); "
    code += "print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr

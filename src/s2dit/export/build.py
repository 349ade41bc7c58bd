"""``s2dit export onnx|executorch|coreml``: a streaming S2DiT (and its tiny decoder) -> an export folder.

Each entry point of :mod:`s2dit.export.entry_points` becomes one artefact (``prompt``, ``denoise``,
``commit``, ``decoder`` + the runtime's suffix), written under a temporary name and renamed when whole,
then ``manifest.json`` is written last: a folder with a manifest is a finished export.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import torch

from s2dit.errors import S2DitError
from s2dit.export.backends import RUNTIMES, SUFFIX, write_entry
from s2dit.export.entry_points import StreamGraphs
from s2dit.export.manifest import MANIFEST, EntryPoint, Manifest, sha256_of, specs


def export_stream(
    model,
    ae,
    runtime: str,
    out: str | os.PathLike,
    latent_size: tuple[int, int],
    settings,
    *,
    text_len: int,
    text_encoder: str,
    fps: float,
    checkpoint: str,
    quantize: bool = False,
    progress: bool = True,
) -> Manifest:
    """Export ``model`` (an S2DiT) and ``ae`` (a tiny autoencoder, or None) for ``runtime`` into ``out``.

    ``quantize`` (ExecuTorch): the per-step graphs' linear layers in int8 (per-channel weights, activations
    quantised on the fly, torchao), lowered to XNNPACK's int8 kernels; the prompt graph and the decoder stay
    float32."""
    from tqdm import tqdm

    if runtime not in RUNTIMES:
        raise S2DitError(f"runtime {runtime!r}: choose from {', '.join(RUNTIMES)}")
    if quantize and runtime != "executorch":
        raise S2DitError("--quantize is for ExecuTorch (XNNPACK int8) exports")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # unfinished until the new manifest lands
    graphs = StreamGraphs(
        model.float().cpu(), ae, latent_size, settings.spec, text_len, conv_2d=runtime == "executorch"
    )
    entries = {}
    for name in tqdm(list(graphs.modules), desc=f"export {runtime}", unit="graph", disable=not progress):
        if quantize and name == "denoise":  # after the float prompt graph; before the per-step ones
            _quantize_linears(graphs.model)
        module, inputs = graphs.modules[name], graphs.example_inputs(name)
        in_names, out_names = graphs.names(name)
        with torch.no_grad():
            outputs = module(*inputs)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        path = out / f"{name}{SUFFIX[runtime]}"
        tmp = out / f".{name}.tmp{SUFFIX[runtime]}"
        _remove(tmp)
        # The prompt graph runs once per prompt: ExecuTorch's portable kernels keep it exact (XNNPACK's fast
        # GELU is off by ~6e-5, 2e-4 after the text MLP); the per-step graphs go to XNNPACK.
        write_entry(runtime, module, inputs, in_names, out_names, tmp, delegate=name != "prompt")
        _remove(path)
        os.replace(tmp, path)
        entries[name] = EntryPoint(
            path.name, sha256_of(path), specs(in_names, inputs), specs(out_names, outputs)
        )
    H, W = latent_size
    manifest = Manifest(
        runtime=runtime,
        checkpoint=checkpoint,
        latent_size=[H, W],
        video_size=[8 * W, 8 * H],
        channels=model.config.in_channels,
        text_len=text_len,
        text_dim=model.config.text_dim,
        text_encoder=text_encoder,
        fps=fps,
        stream=dataclasses.asdict(settings),
        entry_points=entries,
        precision="float16" if runtime == "coreml" else "int8-dynamic" if quantize else "float32",
    )
    manifest.write(out)
    return manifest


def export_model(
    runtime: str,
    out: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    preset: str = "micro",
    size: tuple[int, int] | None = None,
    chunk: int | None = None,
    vae: str | os.PathLike | None = None,
    quantize: bool = False,
    warn=None,
) -> Manifest:
    """Export a trained S2DiT folder (or run), or with ``checkpoint=None`` the untrained ``preset``, for
    ``runtime`` into ``out``: what ``s2dit export`` runs. ``size`` (width, height) defaults to the model's
    (256x144 for a preset); ``chunk`` (latent frames per chunk) to its stream settings; ``vae`` to its VAE.
    Without a tiny-autoencoder decoder the export has no decoder graph and ``warn`` is told why."""
    import warnings

    from s2dit.diffusion.pipeline import read_pipeline
    from s2dit.diffusion.stream_pipeline import load_stream_model
    from s2dit.latent.tiny_ae import TinyAutoencoder

    if chunk is not None and chunk < 1:
        raise S2DitError(f"--chunk {chunk} must be at least 1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = load_stream_model(
            str(checkpoint) if checkpoint else None,
            vae=str(vae) if vae else None,
            preset=preset,
            size=size or (256, 144),
        )
    latent_size = (size[1] // 8, size[0] // 8) if size and checkpoint else parts.latent_size
    if chunk is not None:
        parts.settings = dataclasses.replace(parts.settings, chunk_frames=chunk)
    ae = parts.vae if isinstance(parts.vae, TinyAutoencoder) else None
    if ae is None and warn is not None:
        warn(
            "the model's VAE is not a tiny autoencoder: exporting without a decoder "
            "(distil one with s2dit train decoder and pass it as --vae)"
        )
    if checkpoint:
        info = read_pipeline(checkpoint)
        text, text_len, label = info.text, info.text_len, str(checkpoint)
    else:
        text, text_len, label = "hashed", 8, f"random-weights:{preset}"
    return export_stream(
        parts.model,
        ae,
        runtime,
        out,
        latent_size,
        parts.settings,
        text_len=text_len,
        text_encoder=text,
        fps=parts.fps,
        checkpoint=label,
        quantize=quantize,
    )


def _quantize_linears(model) -> None:
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, quantize_
    from torchao.quantization.granularity import PerAxis

    quantize_(
        model, Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8, weight_granularity=PerAxis(0))
    )


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)

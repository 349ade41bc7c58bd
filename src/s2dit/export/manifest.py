"""``manifest.json``: what an export folder holds and how to call it, beside the artefacts.

Schema ``s2dit.export/1``: the runtime, the checkpoint it came from, the model's streaming settings (chunk,
steps, shift, commit timestep, window and sinks), the latent and video sizes, the text length and width, and
per entry point its file, the file's SHA-256 and its inputs and outputs in order (name, shape, dtype). A
runner checks the manifest before it runs anything: the schema, the runtime, every file present and
unchanged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

from s2dit.atomic import write_text_atomic
from s2dit.errors import S2DitError
from s2dit.files import read_json

SCHEMA = "s2dit.export/1"
MANIFEST = "manifest.json"
MAX_SIZE = 2**31 - 1  # any size, length or tensor element count above this is damage, not a model


@dataclasses.dataclass
class TensorSpec:
    name: str
    shape: list[int]
    dtype: str  # torch dtype name without the prefix: float32, int64, ...


@dataclasses.dataclass
class EntryPoint:
    file: str
    sha256: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


@dataclasses.dataclass
class Manifest:
    runtime: str  # onnx, executorch, coreml
    checkpoint: str
    latent_size: list[int]  # H, W of a latent chunk
    video_size: list[int]  # width, height in pixels
    channels: int
    text_len: int
    text_dim: int
    text_encoder: str
    fps: float
    stream: dict  # StreamSettings as a dict
    entry_points: dict[str, EntryPoint]
    precision: str = "float32"
    schema: str = SCHEMA

    def write(self, folder: Path) -> None:
        write_text_atomic(folder / MANIFEST, json.dumps(dataclasses.asdict(self), indent=1))

    @classmethod
    def read(cls, folder: str | Path) -> Manifest:
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise S2DitError(f"{folder} has no {MANIFEST}: not an s2dit export folder")
        raw = read_json(path)
        try:
            if raw.get("schema") != SCHEMA:
                raise S2DitError(f"{path}: schema {raw.get('schema')!r}, this s2dit reads {SCHEMA!r}")
            entries = {
                k: EntryPoint(
                    e["file"],
                    e["sha256"],
                    [TensorSpec(**t) for t in e["inputs"]],
                    [TensorSpec(**t) for t in e["outputs"]],
                )
                for k, e in raw.pop("entry_points").items()
            }
            manifest = cls(**raw, entry_points=entries)
        except (KeyError, TypeError, AttributeError) as e:
            raise S2DitError(f"{path} is damaged or incomplete ({e})") from None
        manifest.validate(path)
        return manifest

    def validate(self, path: Path | str) -> None:
        """Refuse values no export writes (a hand-edited or damaged manifest) before anything is allocated."""

        def fail(field: str, message: str):
            raise S2DitError(f"{path}: {field} {message}")

        def count(value, field: str, low: int = 1) -> None:
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= MAX_SIZE:
                fail(field, f"must be an integer in {low}..{MAX_SIZE}, got {value!r}")

        for field in ("runtime", "checkpoint", "text_encoder", "precision"):
            if not isinstance(getattr(self, field), str):
                fail(field, "must be a string")
        for field in ("channels", "text_len", "text_dim"):
            count(getattr(self, field), field)
        for field in ("latent_size", "video_size"):
            sizes = getattr(self, field)
            if not isinstance(sizes, list) or len(sizes) != 2:
                fail(field, f"must be a list of two sizes, got {sizes!r}")
            for i, n in enumerate(sizes):
                count(n, f"{field}[{i}]")
        fps = self.fps
        if not isinstance(fps, int | float) or isinstance(fps, bool) or not 0 < fps <= 1000:
            fail("fps", f"must be a number in (0, 1000], got {fps!r}")
        if not isinstance(self.stream, dict):
            fail("stream", "must be an object")
        for name, entry in self.entry_points.items():
            if not isinstance(entry.file, str) or not isinstance(entry.sha256, str):
                fail(f"entry_points.{name}", "needs file and sha256 strings")
            for spec in (*entry.inputs, *entry.outputs):
                where = f"entry_points.{name} tensor {spec.name!r}"
                if not isinstance(spec.shape, list):
                    fail(where, "needs a shape list")
                for n in spec.shape:
                    count(n, where + " shape", low=0)
                if math.prod(spec.shape) > MAX_SIZE:
                    fail(where, f"has {math.prod(spec.shape)} elements (at most {MAX_SIZE})")

    def check(self, folder: str | Path, runtime: str | None = None) -> None:
        """Refuse a folder whose artefacts are not the ones this manifest describes."""
        folder = Path(folder)
        if runtime is not None and runtime != self.runtime:
            raise S2DitError(f"{folder} holds a {self.runtime} export, not {runtime}")
        for name, entry in self.entry_points.items():
            path = folder / entry.file
            if not path.exists():
                raise S2DitError(f"{folder}: the {name} entry point's {entry.file} is missing")
            if sha256_of(path) != entry.sha256:
                raise S2DitError(
                    f"{folder}: {entry.file} does not match the manifest (its SHA-256 differs): "
                    "re-export the folder instead of mixing files from several exports"
                )


def sha256_of(path: Path) -> str:
    """Of a file, or of every file under a folder (a Core ML package), in sorted order."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        digest.update(str(f.relative_to(path)).encode() if path.is_dir() else b"")
        with open(f, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def specs(names: list[str], tensors) -> list[TensorSpec]:
    return [
        TensorSpec(n, list(t.shape), str(t.dtype).removeprefix("torch."))
        for n, t in zip(names, tensors, strict=True)
    ]

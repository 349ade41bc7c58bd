"""``s2dit data encode``: a captioned video folder -> shards of latents and text embeddings
(docs/architecture.md §4).

Output folder::

    config.yaml                the resolved EncodeConfig (a rerun must use the same one)
    shard-00000.safetensors    per clip i: latents_i [16, T, h, w], text_i [L_i, D] (valid tokens only)
    shard-00000.json           the shard's rows: video, caption, attributes (micro-world objects, if any),
                               and the clips skipped as undecodable
    index.json                 every shard, clip counts, skipped counts; written when all shards exist
    null_text.safetensors      the empty prompt's embedding (the unconditional input of CFG)

Clip ``k`` of the folder's caption list goes to shard ``k // shard_size``; shard ``s`` belongs to rank
``s % world_size`` (``RANK`` / ``WORLD_SIZE`` from torchrun), so ranks never write the same file. A shard is
written atomically, its ``.json`` last; a rerun skips shards whose ``.json`` exists, so a killed run resumes
where it stopped. Unreadable or too-short videos are skipped and counted, never fatal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path

import torch

from s2dit.atomic import atomic_path, remove_stale_temporaries, write_text_atomic
from s2dit.config import VideoSpec, describe_changes, from_dict, save_config
from s2dit.errors import ConfigError, S2DitError
from s2dit.files import load_safetensors, open_safetensors, read_json, read_yaml
from s2dit.latent.text import load_text_encoder
from s2dit.latent.vae import load_vae
from s2dit.lock import FolderLock
from s2dit.ranks import rank_and_world

NULL_TEXT = "null_text.safetensors"


@dataclasses.dataclass
class EncodeConfig:
    videos: str = "runs/micro"  # a micro world or a captioned video folder
    out: str = "runs/micro_latents"
    vae: str = (
        "runs/micro_vae"  # a tiny-autoencoder folder (tiny_ae.safetensors) or a diffusers Wan VAE folder
    )
    text: str = "minilm"  # "minilm" or a local text-encoder folder
    video: VideoSpec = dataclasses.field(default_factory=VideoSpec)
    shard_size: int = 64
    text_max_length: int = 128

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise ConfigError(f"shard_size: {self.shard_size} must be at least 1")


def _attributes(root: Path) -> dict[str, dict]:
    """Micro-world ground truth by video path (empty for other folders)."""
    index = root / "clips.jsonl"
    if not index.is_file():
        return {}
    rows = {}
    for line in index.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "video" in row:
            rows[row["video"]] = {"background": row.get("background"), "objects": row.get("objects")}
    return rows


@torch.no_grad()
def encode_folder(cfg: EncodeConfig, progress: bool = True) -> dict:
    """Encode this rank's shards of ``cfg.videos`` into ``cfg.out``; returns a summary."""
    rank, _ = rank_and_world()
    # One job per folder; under torchrun rank 0 holds the lock for the job (its ranks share the folder).
    with FolderLock(cfg.out) if rank == 0 else contextlib.nullcontext():
        return _encode(cfg, progress)


def _encode(cfg: EncodeConfig, progress: bool) -> dict:
    from tqdm import tqdm

    from s2dit.data.video_folder import VideoFolderDataset, read_captions

    out = Path(cfg.out)
    if (out / "config.yaml").is_file():
        # The folder's own location may change (a moved or copied folder resumes); nothing else may.
        old = dataclasses.replace(from_dict(EncodeConfig, read_yaml(out / "config.yaml")), out=cfg.out)
        if old != cfg:
            raise S2DitError(f"{out} holds shards made with other settings ({describe_changes(old, cfg)})")
    out.mkdir(parents=True, exist_ok=True)
    rank, world = rank_and_world()
    if rank == 0:
        save_config(cfg, out / "config.yaml")
    pairs = read_captions(cfg.videos)
    n_shards = (len(pairs) + cfg.shard_size - 1) // cfg.shard_size
    owned = [s for s in range(n_shards) if s % world == rank]
    # Each rank cleans up only its own interrupted writes: another rank's may be in progress.
    names = [f"shard-{s:05d}{ext}" for s in owned for ext in (".safetensors", ".json")]
    remove_stale_temporaries(out, names + (["config.yaml", NULL_TEXT, "index.json"] if rank == 0 else []))
    if rank == 0 and not (out / NULL_TEXT).is_file():
        _write_null_text(out, load_text_encoder(cfg.text, cfg.text_max_length))

    mine = [s for s in owned if not (out / f"shard-{s:05d}.json").is_file()]
    summary = {"rank": rank, "shards": len(mine), "clips": 0, "skipped": 0}
    if mine:
        vae = load_vae(cfg.vae)
        text = load_text_encoder(cfg.text, cfg.text_max_length)
        dataset = VideoFolderDataset(cfg.videos, cfg.video)  # probes every file once; bad ones are counted
        usable = {video: i for i, (video, *_rest) in enumerate(dataset.items)}
        attributes = _attributes(Path(cfg.videos))
        total = sum(len(pairs[s * cfg.shard_size : (s + 1) * cfg.shard_size]) for s in mine)
        bar = tqdm(total=total, desc=f"encode (rank {rank})", unit="clip", disable=not progress)
        for s in mine:
            tensors, rows, skipped = {}, [], []
            for video, caption in pairs[s * cfg.shard_size : (s + 1) * cfg.shard_size]:
                bar.update()
                try:
                    if video not in usable:
                        raise S2DitError("missing, unreadable or too short")
                    pixels = dataset._load(usable[video])["pixels"]
                except S2DitError as e:
                    skipped.append({"video": video, "why": str(e)})
                    continue
                i = len(rows)
                tensors[f"latents_{i}"] = vae.encode(pixels[None])[0].contiguous()
                tokens, mask = text.encode([caption])
                tensors[f"text_{i}"] = tokens[0][mask[0]].contiguous()
                rows.append({"video": video, "caption": caption, **attributes.get(video, {})})
            _write_shard(out, s, tensors, rows, skipped)
            summary["clips"] += len(rows)
            summary["skipped"] += len(skipped)
        bar.close()
    _write_index_if_complete(out, n_shards)
    return summary


def _write_null_text(out: Path, text) -> None:
    """The empty prompt's embedding (valid tokens only): the unconditional input of CFG."""
    from safetensors.torch import save_file

    tokens, mask = text.encode([""])
    with atomic_path(out / NULL_TEXT) as tmp:
        save_file({"text": tokens[0][mask[0]].contiguous()}, str(tmp))


def _write_shard(out: Path, s: int, tensors: dict, rows: list, skipped: list) -> None:
    from safetensors.torch import save_file

    with atomic_path(out / f"shard-{s:05d}.safetensors") as tmp:
        save_file(tensors or {"empty": torch.zeros(0)}, str(tmp))
    write_text_atomic(out / f"shard-{s:05d}.json", json.dumps({"rows": rows, "skipped": skipped}))


def _write_index_if_complete(out: Path, n_shards: int) -> None:
    metas = [out / f"shard-{s:05d}.json" for s in range(n_shards)]
    if not all(m.is_file() for m in metas):
        return  # other ranks are still working; the last one to finish writes the index
    shards = []
    for s, m in enumerate(metas):
        meta = json.loads(m.read_text())
        shards.append(
            {
                "shard": f"shard-{s:05d}.safetensors",
                "clips": len(meta["rows"]),
                "skipped": len(meta["skipped"]),
            }
        )
    index = {
        "shards": shards,
        "clips": sum(x["clips"] for x in shards),
        "skipped": sum(x["skipped"] for x in shards),
    }
    write_text_atomic(out / "index.json", json.dumps(index, indent=1))


class LatentShardDataset(torch.utils.data.Dataset):
    """Clips of an encoded folder: ``{"latents" [16, T, h, w], "text" [L, D], "caption", ...attributes}``."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        index = self.folder / "index.json"
        if not index.is_file():
            raise S2DitError(f"{self.folder} has no index.json: run (or finish) s2dit data encode first")
        self.items = []
        try:
            for entry in read_json(index)["shards"]:
                meta = read_json((self.folder / entry["shard"]).with_suffix(".json"))
                self.items += [(entry["shard"], i, row) for i, row in enumerate(meta["rows"])]
        except (KeyError, TypeError) as e:
            raise S2DitError(f"{self.folder}: index.json or a shard's .json is damaged ({e!r})") from None

    def __len__(self) -> int:
        return len(self.items)

    def null_text(self) -> torch.Tensor:
        """The empty prompt's embedding ``[L, D]`` (the unconditional input of CFG)."""
        path = self.folder / NULL_TEXT
        if not path.is_file():
            raise S2DitError(f"{path} is missing: rerun s2dit data encode on this folder to add it")
        return load_safetensors(path)["text"]

    def __getitem__(self, i: int) -> dict:
        shard, k, row = self.items[i]
        with open_safetensors(self.folder / shard) as f:
            return {"latents": f.get_tensor(f"latents_{k}"), "text": f.get_tensor(f"text_{k}"), **row}

"""Writing a micro world to disk: ``clips/NNNNNN.mp4`` + ``clips.jsonl`` + ``config.yaml``, resumably.

Layout of an output folder::

    config.yaml     the resolved MicroWorldConfig (a rerun must use the same one)
    clips.jsonl     one row per finished clip: id, video, caption, background, objects (with per-frame truth)
    clips/          000000.mp4, 000001.mp4, ...

Each mp4 is written to a temporary file and renamed into place; its JSONL row is appended (and fsynced)
only after that. An interrupted run therefore leaves at worst an mp4 without a row or a torn last line;
rerunning repairs both and makes exactly the missing clips. Clip ``i`` depends only on (seed, i), so
the result does not depend on interruptions or on the number of worker processes.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import yaml

from s2dit.atomic import remove_stale_temporaries, write_text_atomic
from s2dit.config import VideoSpec, describe_changes, from_dict, save_config
from s2dit.data.micro.captions import write_caption
from s2dit.data.micro.render import render_scene
from s2dit.data.micro.scene import clip_rng, sample_scene
from s2dit.data.micro.vocab import COMBOS
from s2dit.errors import ConfigError, S2DitError
from s2dit.lock import FolderLock

MAX_OBJECTS = 3  # captions count objects in words up to three
INDEX = "clips.jsonl"
CLIPS = "clips"


@dataclasses.dataclass
class MicroWorldConfig:
    """How micro-world clips are made. The clip index and this config fully determine a clip."""

    video: VideoSpec = dataclasses.field(default_factory=VideoSpec)
    seed: int = 0
    min_objects: int = 1
    max_objects: int = 3
    crf: int = 18  # H.264 constant rate factor of the written mp4s (lower is better quality)
    combos: str = "all"  # "train": no held-out (color, shape, motion) triple; "heldout": only those

    def __post_init__(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects <= MAX_OBJECTS:
            raise ConfigError(
                f"objects: need 1 <= min_objects ({self.min_objects}) <= max_objects ({self.max_objects}) "
                f"<= {MAX_OBJECTS}"
            )
        if self.seed < 0:
            raise ConfigError(f"seed: {self.seed} must be >= 0")
        if not 0 <= self.crf <= 51:
            raise ConfigError(f"crf: {self.crf} is outside 0..51")
        if self.combos not in COMBOS:
            raise ConfigError(f"combos: {self.combos!r} must be one of {', '.join(COMBOS)}")


def make_clip(cfg: MicroWorldConfig, index: int):
    """Render clip ``index``: returns ``(frames [F, H, W, 3] uint8, row)`` with its ground truth."""
    rng = clip_rng(cfg.seed, index)
    scene = sample_scene(rng, cfg.video, cfg.min_objects, cfg.max_objects, cfg.combos)
    caption = write_caption(rng, scene)
    row = {
        "id": index,
        "video": f"{CLIPS}/{index:06d}.mp4",
        "caption": caption,
        "background": scene.background,
        "width": cfg.video.width,
        "height": cfg.video.height,
        "frames": cfg.video.frames,
        "fps": cfg.video.fps,
        "objects": [o.to_json() for o in scene.objects],
    }
    return render_scene(scene), row


def _write_clip(args: tuple[MicroWorldConfig, str, int]) -> dict:
    """Worker: render clip ``index`` and write its mp4 atomically; returns its JSONL row."""
    from s2dit.videoio import write_video

    cfg, out, index = args
    frames, row = make_clip(cfg, index)
    write_video(Path(out) / row["video"], frames, cfg.video.fps, crf=cfg.crf)
    return row


def _die_with_parent(parent: int) -> None:
    """Pool initializer: end this worker when the parent dies, even by SIGKILL (no cleanup runs there, so
    nothing else would tell it, and it would wait for work forever)."""
    if sys.platform == "linux":
        PR_SET_PDEATHSIG = 1  # <linux/prctl.h>: the kernel sends this signal when the parent exits
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    else:  # no such call: watch for the reparenting instead

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # the parent died before we asked
        os._exit(1)


def read_index(folder: str | os.PathLike) -> list[dict]:
    """The valid rows of a world's ``clips.jsonl`` (torn lines and rows whose mp4 is missing dropped)."""
    folder = Path(folder)
    path = folder / INDEX
    if not path.exists():
        return []
    rows, seen = [], set()
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a crash
        clip_id = row.get("id") if isinstance(row, dict) else None
        if (
            not isinstance(clip_id, int)
            or clip_id in seen
            or row.get("video") != f"{CLIPS}/{clip_id:06d}.mp4"
            or not (folder / row["video"]).is_file()
        ):
            continue
        seen.add(clip_id)
        rows.append(row)
    return rows


def _check_same_config(out: Path, cfg: MicroWorldConfig) -> None:
    """Refuse to mix worlds: a folder holding clips must have been made with ``cfg``."""
    path = out / "config.yaml"
    if not path.exists() or not read_index(out):
        return  # nothing made yet (e.g. a first run that failed early): any settings may start over
    try:
        data = yaml.safe_load(path.read_text())
        old = from_dict(MicroWorldConfig, data if isinstance(data, dict) else {"": data})
    except (ConfigError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise S2DitError(f"{path} is not a micro-world config ({e}); use another --out folder") from None
    if old != cfg:
        diff = describe_changes(old, cfg)
        raise S2DitError(f"{out} holds a world made with other settings ({diff}); use another --out folder")


def write_micro_world(
    out: str | os.PathLike, n: int, cfg: MicroWorldConfig, *, workers: int = 0, progress: bool = True
) -> dict:
    """Make sure ``out`` holds clips 0..n-1 of the world ``cfg``; make only the missing ones.

    ``workers``: processes that render and encode clips (0: one per CPU core). Returns a summary dict
    (``total``, ``made``, ``already``, ``seconds``).
    """
    if n < 1:
        raise S2DitError(f"--n must be at least 1, got {n}")
    if workers < 0:
        raise S2DitError(f"--workers must be 0 (one per core) or more, got {workers}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise S2DitError(f"--out {out} exists and is not a folder")
    with FolderLock(out):  # a second process on this folder would delete our temporaries
        return _make_missing(out, n, cfg, workers, progress)


def _make_missing(out: Path, n: int, cfg: MicroWorldConfig, workers: int, progress: bool) -> dict:
    _check_same_config(out, cfg)
    rows = read_index(out)
    beyond = [r["id"] for r in rows if r["id"] >= n]
    if beyond:
        raise S2DitError(
            f"{out} already holds clips up to id {max(beyond)}: use --n {max(beyond) + 1} or more"
        )
    (out / CLIPS).mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    remove_stale_temporaries(out / CLIPS)
    remove_stale_temporaries(out)
    # Rewrite the index without torn lines, duplicates or rows that lost their mp4.
    write_text_atomic(out / INDEX, "".join(json.dumps(r) + "\n" for r in rows))
    done = {r["id"] for r in rows}
    todo = [i for i in range(n) if i not in done]
    start = time.perf_counter()
    if todo:
        from tqdm import tqdm

        workers = min(workers or os.cpu_count() or 1, len(todo))
        jobs = [(cfg, str(out), i) for i in todo]
        with (
            open(out / INDEX, "a") as index_file,
            tqdm(
                total=n, initial=n - len(todo), desc="micro world", unit="clip", disable=not progress
            ) as bar,
        ):

            def record(row: dict) -> None:
                index_file.write(json.dumps(row) + "\n")
                index_file.flush()
                os.fsync(index_file.fileno())
                rows.append(row)
                bar.update()

            if workers == 1:
                for job in jobs:
                    record(_write_clip(job))
            else:
                # fork on Linux: workers need no re-import of __main__ (scripts, stdin, notebooks all work).
                # A pool executor, unlike multiprocessing.Pool, fails instead of hanging if a worker dies.
                context = mp.get_context("fork" if sys.platform == "linux" else "spawn")
                with ProcessPoolExecutor(
                    workers, mp_context=context, initializer=_die_with_parent, initargs=(os.getpid(),)
                ) as pool:
                    for future in as_completed([pool.submit(_write_clip, job) for job in jobs]):
                        record(future.result())
        # Complete: store the index in clip order for readers who look at it by eye.
        rows.sort(key=lambda r: r["id"])
        write_text_atomic(out / INDEX, "".join(json.dumps(r) + "\n" for r in rows))
    return {
        "total": len(rows),
        "made": len(todo),
        "already": n - len(todo),
        "seconds": time.perf_counter() - start,
    }

"""One s2dit process per output folder: a second process gets one clear error, for data micro, data encode
and train; the lock dies with its holder (SIGKILL included) and is re-entrant within a process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from s2dit.data.encode import EncodeConfig, encode_folder
from s2dit.data.micro.writer import MicroWorldConfig, write_micro_world
from s2dit.errors import S2DitError
from s2dit.lock import LOCK_NAME, FolderLock

HOLD = textwrap.dedent(
    """
    import sys
    from s2dit.lock import FolderLock
    lock = FolderLock(sys.argv[1]).acquire()  # kept: a dropped FolderLock releases itself
    print("held", flush=True)
    sys.stdin.read()  # hold until the test closes our stdin (or kills us)
    """
)


@pytest.fixture
def held_elsewhere(tmp_path):
    """``tmp_path/out``, locked by another process; yields (folder, that process)."""
    folder = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline() == "held\n"
    yield folder, proc
    proc.kill()
    proc.wait()


def in_use(folder, pid: int) -> str:
    return f"{folder} is in use by another s2dit process (pid {pid})"


def test_a_second_process_gets_one_clear_error_until_the_first_exits(held_elsewhere):
    folder, holder = held_elsewhere
    with pytest.raises(S2DitError) as e:
        FolderLock(folder).acquire()
    assert str(e.value) == in_use(folder, holder.pid)
    holder.stdin.close()  # the holder exits normally: the lock goes with it
    holder.wait(timeout=10)
    with FolderLock(folder):
        assert (folder / LOCK_NAME).read_text() == f"{os.getpid()}\n"


def test_a_killed_holder_leaves_no_stale_lock(held_elsewhere):
    folder, holder = held_elsewhere
    holder.kill()  # SIGKILL: no cleanup ran, the .lock file stays, the kernel dropped the flock
    holder.wait(timeout=10)
    assert (folder / LOCK_NAME).exists()
    with FolderLock(folder):
        pass


def test_the_lock_is_reentrant_in_one_process_and_released_by_the_last_holder(tmp_path):
    first = FolderLock(tmp_path).acquire()
    second = FolderLock(tmp_path).acquire()  # e.g. a second Trainer on the same run in a notebook
    first.release()
    probe = [
        sys.executable,
        "-c",
        "import sys; from s2dit.lock import FolderLock; FolderLock(sys.argv[1]).acquire()",
    ]
    busy = subprocess.run([*probe, str(tmp_path)], capture_output=True, text=True)
    assert busy.returncode != 0 and in_use(tmp_path, os.getpid()) in busy.stderr
    second.release()
    assert subprocess.run([*probe, str(tmp_path)], capture_output=True).returncode == 0


def test_a_file_in_the_way_is_a_clear_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(S2DitError, match="exists and is not a folder"):
        FolderLock(tmp_path / "f").acquire()


def test_data_micro_encode_and_train_refuse_a_folder_in_use(held_elsewhere, tmp_path):
    from s2dit.train.config import DataConfig, TrainConfig
    from s2dit.train.trainer import Trainer, train

    folder, holder = held_elsewhere
    message = in_use(folder, holder.pid)
    with pytest.raises(S2DitError) as e:
        write_micro_world(folder, 2, MicroWorldConfig(), workers=1, progress=False)
    assert str(e.value) == message
    with pytest.raises(S2DitError) as e:
        encode_folder(EncodeConfig(videos=str(tmp_path / "videos"), out=str(folder), vae="x"), progress=False)
    assert str(e.value) == message
    # the lock comes before anything reads the (here missing) latents or the run folder
    cfg = TrainConfig(out=str(folder), data=DataConfig(latents=str(tmp_path / "no-latents")), device="cpu")
    with pytest.raises(S2DitError) as e:
        Trainer(cfg, progress=False)
    assert str(e.value) == message
    with pytest.raises(S2DitError) as e:
        train(cfg, progress=False)
    assert str(e.value) == message
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME]  # nothing touched


def test_the_cli_says_so_in_one_line(tmp_path):
    folder = tmp_path / "world"
    with FolderLock(folder):
        result = subprocess.run(
            [sys.executable, "-m", "s2dit.cli", "data", "micro", "--out", str(folder), "--n", "1"],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {in_use(folder, os.getpid())}"]

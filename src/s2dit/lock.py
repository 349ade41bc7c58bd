"""One s2dit process per output folder: an exclusive ``flock`` on ``<folder>/.lock``.

``data micro``, ``data encode`` and ``train`` each clean up temporaries and append to logs in their output
folder, so two of them on one folder would delete each other's files. The first takes the lock for the
whole job; the second stops at once with one line naming the first one's pid. The kernel drops the lock
when the holder exits, however it exits (SIGKILL included), so a stale ``.lock`` file never blocks a rerun.

Within one process the lock is re-entrant (a test or a notebook may build a second trainer on the folder
it is already using); it is released when the last holder releases it. Forked children (pool workers)
share the parent's lock rather than taking their own. On platforms without ``fcntl`` it does nothing.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from s2dit.errors import S2DitError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; run one job per folder by hand
    fcntl = None

LOCK_NAME = ".lock"

_held: dict[Path, list] = {}  # resolved folder -> [fd, holders] for the locks this process holds
_guard = threading.Lock()


class FolderLock:
    """An exclusive lock on ``folder`` (made if missing); use as a context manager or acquire/release."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self._key: Path | None = None

    def acquire(self) -> FolderLock:
        """Take the lock, or raise :class:`S2DitError` when another process holds it."""
        if self._key is not None:
            return self
        if self.folder.exists() and not self.folder.is_dir():
            raise S2DitError(f"{self.folder} exists and is not a folder")
        key = self.folder.resolve()
        with _guard:
            if key in _held:
                _held[key][1] += 1
                self._key = key
                return self
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(key / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as e:
                raise S2DitError(f"cannot use {self.folder}: {e.strerror or e}") from None
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:  # BlockingIOError: someone else has it
                    pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise S2DitError(
                        f"{self.folder} is in use by another s2dit process (pid {pid})"
                    ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            _held[key] = [fd, 1]
            self._key = key
        return self

    def release(self) -> None:
        if self._key is None:
            return
        with _guard:
            entry = _held[self._key]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[self._key]
                os.close(entry[0])  # closing the last descriptor drops the flock
            self._key = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: the kernel drops it with the process
            self.release()

"""Atomic file and folder writes: a crash leaves either the old file (folder) or the new one, never half."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    The temporary name starts with ``.tmp-`` so that interrupted writes are easy to find and clean up
    (:func:`remove_stale_temporaries`). ``suffix`` defaults to the final suffix of ``path``, so that
    libraries that pick a format from the extension (PyAV, Pillow) still do.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success its files are fsynced and it takes the
    place of ``path`` in one step (the old folder, if any, is then deleted).

    For writers that want a folder of their own (``save_pretrained``): a crash leaves the old folder or the
    new one, never a mix. On Linux the swap is ``renameat2(RENAME_EXCHANGE)``; elsewhere (or on a file
    system without it) it is three renames, with a moment in which ``path`` is missing. Temporaries that an
    interrupted write left (``.tmp-<name>.*``) are deleted first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".tmp-{path.name}.*"):
        _remove(stale)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}.", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders; give the usual permissions
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as handle:
                    os.fsync(handle.fileno())
        _fsync_folder(tmp)
        if path.exists():
            _exchange(tmp, path)  # tmp now holds the old folder, deleted below
        else:
            os.rename(tmp, path)
        _fsync_folder(path.parent)
    finally:
        _remove(tmp)


def _exchange(a: Path, b: Path) -> None:
    """Swap two folders' names, atomically where the OS can."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = getattr(libc, "renameat2", None)  # glibc >= 2.28
        if renameat2 is not None:
            AT_FDCWD, RENAME_EXCHANGE = -100, 2  # <fcntl.h>, <linux/fs.h>
            renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
                return
            err = ctypes.get_errno()
            if err not in (errno.EINVAL, errno.ENOSYS):  # EINVAL: this file system cannot exchange
                raise OSError(err, os.strerror(err), str(b))
    aside = a.with_name(a.name + ".old")  # still a .tmp-<name>.* name: a crash here is cleaned up next time
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some platforms cannot open a folder for fsync
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale_temporaries(folder: str | os.PathLike, names: Iterable[str] | None = None) -> int:
    """Delete temporaries left by interrupted :func:`atomic_path` and :func:`atomic_folder` writes in
    ``folder``; return how many. With ``names``, only those of writes to these file names (what one of
    several processes sharing the folder owns: the others' writes in progress are left alone)."""
    patterns = [".tmp-*"] if names is None else [f".tmp-{glob.escape(name)}.*" for name in names]
    removed = 0
    for pattern in patterns:
        for p in Path(folder).glob(pattern):
            _remove(p)
            removed += 1
    return removed

"""The files of a run folder: the writer's lock, the refusal to overwrite, stale temporaries,
disk use, and the size-capped teacher cache.

A run folder holds one full training state (``latest.pt``), the weights-only exports
``best_model.pth`` / ``final_model.pth``, ``metrics.csv``, ``curves.png`` and ``results.json``.
While a run writes there it holds ``.sstkd.lock`` (``fcntl.flock``, released by the kernel
when the process dies, so a stale lock file never blocks); a second writer is refused.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .distributed import all_reduce_mean, is_main

LOCK_FILE = ".sstkd.lock"
# the files a run writes (best.pt: full copies written by earlier versions)
RUN_FILES = ("latest.pt", "best.pt", "best_model.pth", "final_model.pth", "results.json",
             "metrics.csv", "curves.png")
# temporaries of our own naming: atomic_save's mkstemp, the exports', the CSV rewrite's
_TEMP_PATTERNS = (".latest.pt.*.tmp", ".best.pt.*.tmp", ".best_model.pth.tmp",
                  ".final_model.pth.tmp", ".results.json.tmp", "metrics.csv.tmp")


class DiskFullError(OSError):
    """The disk filled up while a checkpoint or export was written (the previous one is kept)."""

    def __init__(self, path: str | Path, kept: str | Path | None):
        msg = f"the disk is full: writing {str(path)!r} failed"
        msg += (f"; the previous checkpoint {str(kept)!r} is kept" if kept is not None else
                "; no earlier checkpoint exists")
        super().__init__(errno.ENOSPC, msg + ". Free some space, then continue with --resume")

    def __str__(self) -> str:
        return str(self.strerror)


@contextlib.contextmanager
def disk_full_guard(path: str | Path, kept: str | Path | None) -> Iterator[None]:
    """Turn ``OSError(ENOSPC)`` raised while writing ``path`` into :class:`DiskFullError`
    naming ``path`` and ``kept`` (the previous checkpoint, if it exists)."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.ENOSPC or isinstance(exc, DiskFullError):
            raise
        kept = kept if kept is not None and Path(kept).is_file() else None
        raise DiskFullError(path, kept) from exc


class RunLock:
    """Exclusive writer's lock of a run folder (``<folder>/.sstkd.lock`` holding the pid).

    Args:
        directory: the run folder (created if missing).
        what: the caller's name, for messages.

    Raises (from :meth:`acquire`):
        ValueError: another live process holds the lock (its pid is named).

    Example:
        >>> import tempfile
        >>> with RunLock(tempfile.mkdtemp()) as lock:
        ...     lock.held
        True
    """

    def __init__(self, directory: str | Path, what: str = "train"):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.what = what
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        if not self.directory.is_dir():
            if self.directory.exists():
                raise ValueError(f"{self.what}: output folder {str(self.directory)!r} is a "
                                 "file, expected a folder")
            self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise ValueError(f"{self.what}: output folder {str(self.directory)!r} is being "
                             f"written by another run (pid {owner}, lock {str(self.path)!r}); "
                             "wait for it, stop it, or choose another --output-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_run_folder(directory: str | Path, what: str = "train") -> RunLock:
    """Take ``directory``'s :class:`RunLock` on rank 0 (the only writer); every rank raises
    the ``ValueError`` when it could not be taken, so no rank waits in a collective.

    Returns:
        the lock (held on rank 0), to :meth:`~RunLock.release` when done.
    """
    lock = RunLock(directory, what)
    error = None
    if is_main():
        try:
            lock.acquire()
        except ValueError as exc:
            error = exc
    if all_reduce_mean(torch.tensor([float(error is None)])).item() < 1.0:
        raise error or ValueError(f"{what}: output folder {str(directory)!r} is being written "
                                  "by another run (found by rank 0)")
    return lock


def existing_run_files(directory: str | Path) -> list[str]:
    """Names of the run files already in ``directory`` (empty when it holds no run)."""
    d = Path(directory)
    return [n for n in RUN_FILES if (d / n).is_file()] if d.is_dir() else []


def refuse_existing_run(directory: str | Path, what: str = "train") -> None:
    """``ValueError`` when ``directory`` already holds a run (or is a file): offer ``--resume``,
    a new ``--output-dir`` or ``--overwrite``."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise ValueError(f"{what}: output folder {str(d)!r} is a file, expected a folder")
    found = existing_run_files(d)
    if found:
        raise ValueError(f"{what}: output folder {str(d)!r} already holds a run "
                         f"({', '.join(found)}); pass --resume to continue it, another "
                         "--output-dir for a new run, or --overwrite to replace it")


def remove_run_files(directory: str | Path) -> None:
    """Delete the run files of an earlier run (``--overwrite``); other files are left alone."""
    for name in RUN_FILES:
        (Path(directory) / name).unlink(missing_ok=True)


def clean_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete temporaries of our own naming left by a killed writer; call with the lock held.

    Returns:
        the deleted paths.
    """
    d = Path(directory)
    removed = []
    for pattern in _TEMP_PATTERNS:
        for p in d.glob(pattern):
            if p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def folder_mb(directory: str | Path) -> float:
    """Total size of the regular files under ``directory`` in MB (10**6 bytes)."""
    total = 0
    for root, _, files in os.walk(directory):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except FileNotFoundError:
                pass
    return round(total / 1e6, 1)


def touch(directory: str | Path) -> None:
    """Mark a cache entry as used now (its folder's mtime orders the LRU eviction)."""
    now = time.time()
    os.utime(directory, (now, now))


def evict_lru(root: str | Path, max_mb: float, keep: str | Path | None = None) -> list[Path]:
    """Delete the least recently used entries (sub-folders) of ``root`` until it fits in
    ``max_mb``; ``keep`` and entries locked by a live run are never deleted.

    Returns:
        the deleted entries, oldest first.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    entries = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    sizes = {p: folder_mb(p) for p in entries}
    total = sum(sizes.values())
    removed = []
    keep = Path(keep).resolve() if keep is not None else None
    for p in entries:
        if total <= max_mb:
            break
        if keep is not None and p.resolve() == keep:
            continue
        lock = RunLock(p)
        try:
            lock.acquire()
        except ValueError:
            continue  # in use
        try:
            shutil.rmtree(p)
        finally:
            lock.release()
        total -= sizes[p]
        removed.append(p)
    return removed


def write_results(path: Path, results: dict[str, Any]) -> None:
    """Strict JSON (``nan`` -> ``null``), written through a temporary file and ``os.replace``."""

    def safe(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: safe(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [safe(v) for v in x]
        return x

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # a kill mid-write leaves the old file whole
    try:
        tmp.write_text(json.dumps(safe(results), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

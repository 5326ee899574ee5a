"""Checkpoint files: atomic writes, RNG state capture / restore, ``latest.pt`` / ``best.pt``."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

LATEST = "latest.pt"
BEST = "best.pt"


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same directory, fsync, then ``os.replace``.

    A failure at any point (pickling error, full disk, interruption) leaves ``path`` as it was
    (absent or the previous checkpoint) and removes the temporary file.

    Args:
        obj: anything ``torch.save`` accepts.
        path: destination; its parent directory is created.
    """
    _atomic_write(Path(path), lambda f: torch.save(obj, f))


def atomic_copy(src: str | Path, dst: str | Path) -> None:
    """Copy ``src`` to ``dst`` atomically (same guarantees as :func:`atomic_save`)."""
    with open(src, "rb") as fin:
        _atomic_write(Path(dst), lambda f: shutil.copyfileobj(fin, f, 1 << 20))


def load_checkpoint(path: str | Path, map_location: str | torch.device | None = "cpu",
                    weights_only: bool = True) -> dict[str, Any]:
    """Load a checkpoint written by :func:`atomic_save`.

    Args:
        path: checkpoint file.
        map_location: where tensors go (``"cpu"`` by default).
        weights_only: ``torch.load``'s safe unpickler; the checkpoints written by this package
            (state dicts, RNG states from :func:`capture_rng_state`, plain configs) need no more.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_checkpoint: no checkpoint at {str(path)!r}")
    return torch.load(path, map_location=map_location, weights_only=weights_only)


def capture_rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Snapshot of every random number generator a training step consumes.

    Args:
        generators: extra named ``torch.Generator`` objects (e.g. a sampler's or the data
            loader's generator).

    Returns:
        ``{'python', 'numpy', 'torch', 'cuda', 'generators'}``, made of tensors, ints, floats
        and strings only (loadable with ``weights_only=True``).
    """
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }
    return state


def restore_rng_state(state: Mapping[str, Any],
                      generators: Mapping[str, torch.Generator] | None = None) -> None:
    """Restore what :func:`capture_rng_state` returned.

    Args:
        state: the snapshot.
        generators: the same named generators that were captured; a name missing from the
            snapshot raises ``ValueError``. CUDA states are restored when CUDA is available and
            the device count matches.
    """
    missing = {"python", "numpy", "torch"} - set(state)
    if missing:
        raise ValueError(f"restore_rng_state: state lacks {sorted(missing)}")
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos,
                         has_gauss, cached))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    saved = state.get("generators", {})
    for key, g in (generators or {}).items():
        if key not in saved:
            raise ValueError(f"restore_rng_state: no state for generator {key!r}; saved "
                             f"generators: {sorted(saved)}")
        g.set_state(saved[key])


class CheckpointManager:
    """``latest.pt`` (every save) and ``best.pt`` (on improvement) in one directory.

    Args:
        directory: where checkpoints go.
        enabled: write files (``False`` on non-zero ranks; loading still works).

    Example:
        >>> import tempfile
        >>> mgr = CheckpointManager(tempfile.mkdtemp())
        >>> mgr.save({"step": 10}, is_best=True)
        >>> mgr.load_latest()["step"]
        10
    """

    def __init__(self, directory: str | Path, enabled: bool = True):
        self.directory = Path(directory)
        self.enabled = enabled

    @property
    def latest_path(self) -> Path:
        return self.directory / LATEST

    @property
    def best_path(self) -> Path:
        return self.directory / BEST

    def save(self, state: Mapping[str, Any], is_best: bool = False) -> None:
        """Write ``state`` to ``latest.pt`` atomically; copy it to ``best.pt`` when ``is_best``."""
        if not self.enabled:
            return
        atomic_save(dict(state), self.latest_path)
        if is_best:
            atomic_copy(self.latest_path, self.best_path)

    def has_latest(self) -> bool:
        return self.latest_path.is_file()

    def load_latest(self, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
        """Load ``latest.pt``."""
        return load_checkpoint(self.latest_path, map_location)

    def load_best(self, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
        """Load ``best.pt``."""
        return load_checkpoint(self.best_path, map_location)

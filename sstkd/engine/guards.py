"""Guards for the training loop: stop cleanly on a non-finite loss."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

import torch


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or Inf.

    Attributes:
        step: training step at which it happened.
        terms: ``{name: value}`` of the non-finite terms.
    """

    def __init__(self, step: int, terms: Mapping[str, float], checkpoint: str | Path | None = None):
        self.step = step
        self.terms = dict(terms)
        listed = ", ".join(f"{k}={v}" for k, v in self.terms.items())
        msg = f"non-finite loss at step {step}: {listed}. Training stopped"
        if checkpoint is not None:
            msg += f"; the last good checkpoint is kept at {str(checkpoint)!r}"
        msg += (". Try a lower optim.lr, optim.grad_clip > 0, train.amp=false, or smaller "
                "distillation weights.")
        super().__init__(msg)


def check_finite(terms: Mapping[str, torch.Tensor | float], step: int,
                 checkpoint: str | Path | None = None) -> None:
    """Raise :class:`NonFiniteLossError` if any loss term is NaN or Inf.

    Tensor terms are checked with one device synchronisation (a single ``isfinite`` reduction
    over all of them); the names are only looked up once something is wrong.

    Args:
        terms: ``{name: scalar tensor or float}``, e.g. ``{'seg': ..., 'pi': ..., 'total': ...}``.
        step: current step, for the message.
        checkpoint: the last good checkpoint, named in the message.
    """
    tensors = [v.detach().reshape(-1).float() for v in terms.values()
               if isinstance(v, torch.Tensor)]
    floats = [float(v) for v in terms.values() if not isinstance(v, torch.Tensor)]
    ok = all(math.isfinite(v) for v in floats)
    if ok and tensors:
        dev = tensors[0].device
        ok = bool(torch.isfinite(torch.cat([t.to(dev) for t in tensors])).all())
    if ok:
        return
    bad = {}
    for k, v in terms.items():
        vals = v.detach().reshape(-1).float().tolist() if isinstance(v, torch.Tensor) else [v]
        if not all(math.isfinite(x) for x in vals):
            bad[k] = vals[0] if len(vals) == 1 else vals
    raise NonFiniteLossError(step, bad, checkpoint)


class TrainingStopped(RuntimeError):
    """Training stopped on a signal (SIGTERM) after writing a checkpoint to resume from.

    Attributes:
        step: the last completed step (the checkpoint's).
        signum: the signal received.
    """

    def __init__(self, step: int, signum: int, checkpoint: str | Path | None):
        self.step, self.signum = step, signum
        where = f"; checkpoint {str(checkpoint)!r} written" if checkpoint is not None else ""
        super().__init__(f"stopped by signal {signum} after step {step}{where}; continue with "
                         "--resume")


def one_line(exc: BaseException) -> str:
    """An exception's message as one line for a CLI (a DataLoader worker's re-raised copy: the
    original error's message, without the worker's traceback)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if any(ln.startswith("Original Traceback") for ln in lines):
        lines = [re.sub(r"^[\w.]+(Error|Exception|Exit): ", "", lines[-1])]
    return " ".join(lines) or type(exc).__name__

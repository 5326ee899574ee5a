"""What ``--resume`` accepts: a readable training state whose fixed settings match the config.

Resuming with changed settings means: the keys in :data:`CHANGEABLE_ON_RESUME` take effect from
the next step (the LR schedule is rebuilt from the current config at the saved step, so a new
``train.iters`` or ``optim.lr`` continues the poly decay from there); every other key fixes
what was trained (model, data, crop, batch, preset, seed, ...) and a difference is refused,
naming each key (old -> new).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

# keys that may differ between the checkpoint's config and the resuming one
CHANGEABLE_ON_RESUME = frozenset({
    "train.iters", "train.teacher_iters", "train.eval_every", "train.ckpt_every",
    "train.log_every", "train.tensorboard", "train.output_dir", "train.deterministic",
    "optim.lr", "optim.power", "optim.warmup_iters", "optim.warmup_factor", "optim.grad_clip",
    "data.workers", "model.teacher_checkpoint",
})
CHANGEABLE_SECTIONS = ("eval.",)
TRAINING_STATE_KEYS = ("step", "distiller", "optimizer", "config")


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'a': {'b': 1}}`` -> ``{'a.b': 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]
                       ) -> list[tuple[str, Any, Any]]:
    """``[(key, saved value, current value)]`` for every leaf key that differs, sorted."""
    a, b = flatten(saved), flatten(current)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _fixed(key: str) -> bool:
    return key not in CHANGEABLE_ON_RESUME and not key.startswith(CHANGEABLE_SECTIONS)


def read_training_state(path: str | Path, what: str = "train") -> dict[str, Any]:
    """Load a ``latest.pt`` written by ``train``; ``ValueError`` naming the file if it is
    unreadable (truncated, corrupt) or is not a training state (e.g. a weights-only export)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip / pickle errors of a truncated or foreign file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0]
        raise ValueError(f"{what}: cannot resume from {str(path)!r}: the file is truncated or "
                         f"not a checkpoint ({reason}); --resume best restarts from "
                         "best_model.pth's weights, --overwrite starts over") from None
    if not isinstance(state, dict) or not all(k in state for k in TRAINING_STATE_KEYS):
        kind = ("model weights only (an export such as final_model.pth / best_model.pth)"
                if isinstance(state, dict) and "model" in state else "no training state")
        raise ValueError(f"{what}: cannot resume from {str(path)!r}: it holds {kind}, not a "
                         "training state (latest.pt); pass --resume (latest.pt) or --resume best "
                         "to restart from best_model.pth's weights")
    return state


def check_resume(path: str | Path, saved_cfg: Mapping[str, Any], cfg: Mapping[str, Any],
                 step: int, what: str = "train") -> list[tuple[str, Any, Any]]:
    """Refuse a resume whose fixed settings differ or whose ``train.iters`` is not past
    ``step``; return the changed settings that take effect (for a message).

    Raises:
        ValueError: naming ``path``, each differing fixed key (old -> new), or the iters.
    """
    diffs = config_differences(saved_cfg, cfg)
    fixed = [d for d in diffs if _fixed(d[0])]
    if fixed:
        listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in fixed)
        raise ValueError(f"{what}: cannot resume from {str(path)!r}: settings that cannot change "
                         f"mid-run differ from the checkpoint's: {listed} (start a new run with "
                         "another --output-dir, or --overwrite)")
    iters = flatten(cfg)["train.iters"]
    old_iters = flatten(saved_cfg).get("train.iters")
    if iters < step or (iters == step and iters != old_iters):
        raise ValueError(f"{what}: cannot resume from {str(path)!r} at step {step} with "
                         f"train.iters={iters}: train.iters must be greater than the saved step "
                         f"(the checkpoint's run had train.iters={old_iters})")
    return diffs

"""Loading weights from local files: ImageNet backbones (torchvision layout) and our checkpoints.

Nothing is ever downloaded. Every load is strict: a missing, unexpected or wrongly-shaped key
raises :class:`CheckpointMismatchError` listing them, never a silent partial load.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__

CHECKPOINT_FORMAT = "sstkd-checkpoint-v1"


class CheckpointMismatchError(ValueError):
    """A state dict whose keys or shapes do not match the module it is loaded into."""


def _read(path: str | Path, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no such file {str(path)!r}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors: say which file
        raise ValueError(f"{what}: could not read {str(path)!r} as a torch checkpoint: "
                         f"{exc}") from exc


def _unwrap(obj: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """The tensor dict inside common wrappers (``state_dict``/``model``, ``module.`` prefix)."""
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{str(path)!r} does not hold a state dict of tensors "
                         f"(got {type(obj).__name__})")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _list(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_and_load(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strictly load ``state`` into ``module``; raise listing missing/unexpected/mismatched keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k} (checkpoint {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
                    for k in set(own) & set(state) if state[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        parts = [f"cannot load {source} into {type(module).__name__}:"]
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_list(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_list(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {_list(shapes)}")
        raise CheckpointMismatchError("\n  ".join(parts))
    module.load_state_dict(state, strict=True)


def load_pretrained_backbone(backbone: nn.Module, path: str | Path) -> None:
    """Load an ImageNet checkpoint in torchvision's ResNet / MobileNetV2 key layout.

    Classification-only keys (``fc.``, ``classifier.``, MobileNetV2's ``features.18.``; listed
    in ``backbone.ignored_pretrained_prefixes``) are dropped with a warning; every other key
    must match exactly (names and shapes).

    Args:
        backbone: a :class:`~sstkd.models.resnet.ResNet` or
            :class:`~sstkd.models.mobilenetv2.MobileNetV2`.
        path: local ``.pth`` file (a plain state dict, or one under ``state_dict``/``model``).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointMismatchError: missing / unexpected keys or shape mismatches (all listed).
    """
    state = _unwrap(_read(path, "load_pretrained_backbone"), path)
    prefixes = tuple(getattr(backbone, "ignored_pretrained_prefixes", ()))
    dropped = sorted(k for k in state if prefixes and k.startswith(prefixes))
    if dropped:
        warnings.warn(f"load_pretrained_backbone: ignoring {len(dropped)} classification keys "
                      f"from {str(path)!r} ({_list(dropped, 4)})", stacklevel=2)
    state = {k: v for k, v in state.items() if k not in set(dropped)}
    check_and_load(backbone, state, f"pretrained backbone {str(path)!r}")


def save_checkpoint(path: str | Path, model: nn.Module, **extra: Any) -> None:
    """Save ``model``'s weights with its registry name and build arguments.

    The file holds ``{'format', 'sstkd_version', 'arch', 'build_kwargs', 'model', **extra}``;
    ``extra`` must be plain Python data / tensors (e.g. ``iteration=1000, miou=0.71``).
    """
    payload = {"format": CHECKPOINT_FORMAT, "sstkd_version": __version__,
               "arch": getattr(model, "name", ""),
               "build_kwargs": getattr(model, "build_kwargs", {}),
               "model": model.state_dict(), **extra}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)


def load_checkpoint(path: str | Path, model: nn.Module | None = None, name: str | None = None,
                    **build_kwargs: Any) -> tuple[nn.Module, dict]:
    """Load one of the project's checkpoints (or a plain state dict) strictly.

    Args:
        path: file written by :func:`save_checkpoint`, or a bare state dict.
        model: module to load into; ``None`` builds it through the registry from the
            checkpoint's ``arch`` and ``build_kwargs`` (or from ``name`` and ``build_kwargs``
            given here, for a bare state dict).
        name: expected registry name; a checkpoint of another model is an error.

    Returns:
        ``(model, info)`` where ``info`` is the checkpoint without its weights.

    Raises:
        FileNotFoundError, ValueError (wrong model), CheckpointMismatchError (names the keys).
    """
    obj = _read(path, "load_checkpoint")
    info = {k: v for k, v in obj.items() if k != "model"} if isinstance(obj, dict) else {}
    ours = info.get("format") == CHECKPOINT_FORMAT
    arch = info.get("arch") if ours else None
    expected = name or (getattr(model, "name", "") if model is not None else "")
    if arch and expected and arch != expected:
        raise ValueError(f"load_checkpoint: {str(path)!r} holds a {arch!r} model, expected "
                         f"{expected!r}")
    if model is None:
        if not (arch or name):
            raise ValueError(f"load_checkpoint: {str(path)!r} has no model name ('arch'); "
                             "pass name= or model= to load a bare state dict")
        from .registry import build_model
        model = build_model(arch or name, **(info.get("build_kwargs") if ours else build_kwargs))
    check_and_load(model, _unwrap(obj, path), f"checkpoint {str(path)!r}")
    return model, info

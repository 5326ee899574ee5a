"""Colourised label maps blended with their images (PNG via Pillow)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .data.transforms import IMAGENET_MEAN, IMAGENET_STD


def make_palette(num_classes: int, palette: Sequence[Sequence[int]] = ()) -> np.ndarray:
    """``(K, 3)`` uint8 colours: ``palette`` first, then deterministic pseudo-random colours."""
    rng = np.random.default_rng(12345)
    extra = rng.integers(0, 256, size=(max(num_classes - len(palette), 0), 3))
    colours = np.concatenate([np.asarray(palette, dtype=np.int64).reshape(-1, 3), extra])
    return colours[:num_classes].astype(np.uint8)


def colorize(label: np.ndarray | torch.Tensor, palette: np.ndarray,
             ignore_index: int = 255) -> np.ndarray:
    """``(H, W)`` class map -> ``(H, W, 3)`` uint8 colours (ignored / out-of-range pixels black)."""
    label = np.asarray(label.cpu() if isinstance(label, torch.Tensor) else label, dtype=np.int64)
    out = np.zeros((*label.shape, 3), dtype=np.uint8)
    valid = (label >= 0) & (label < len(palette)) & (label != ignore_index)
    out[valid] = palette[label[valid]]
    return out


def denormalize(image: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """Normalised ``(3, H, W)`` float tensor -> ``(H, W, 3)`` uint8 array."""
    m = torch.tensor(mean, dtype=image.dtype, device=image.device)[:, None, None]
    s = torch.tensor(std, dtype=image.dtype, device=image.device)[:, None, None]
    x = ((image * s + m) * 255).clamp(0, 255).round().byte()
    return x.permute(1, 2, 0).cpu().numpy()


def save_blend(path: str | Path, image: np.ndarray, pred: np.ndarray | torch.Tensor,
               palette: np.ndarray, target: np.ndarray | torch.Tensor | None = None,
               alpha: float = 0.5, ignore_index: int = 255) -> Path:
    """Write ``image`` blended with the colourised ``pred`` (and, if given, beside the
    blended ground truth) as a PNG.

    Args:
        path: output file. image: uint8 ``(H, W, 3)``. pred / target: ``(H, W)`` class maps.
        palette: ``(K, 3)`` uint8 colours. alpha: weight of the colours.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"save_blend: alpha must be in [0, 1], got {alpha!r}")
    panels = [pred] if target is None else [pred, target]
    img = image.astype(np.float32)
    out = [((1 - alpha) * img + alpha * colorize(p, palette, ignore_index)).astype(np.uint8)
           for p in panels]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(out, axis=1)).save(path)
    return path

"""Inference modes: whole image, sliding window, multi-scale (+ flip).

All functions take a model that maps ``(B, 3, h, w)`` to logits ``(B, K, h, w)`` (as a
:class:`~sstkd.models.SegmentationModel` in eval mode does) and return scores
``(B, K, H, W)`` at the input size; ``scores.argmax(1)`` is the prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _check_image(image: torch.Tensor, fn: str) -> None:
    if not isinstance(image, torch.Tensor) or image.dim() != 4:
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"{fn}: image must be a (B, C, H, W) tensor, got {got}")


@torch.no_grad()
def predict_whole(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """Logits of the whole image in one pass: ``(B, C, H, W)`` -> ``(B, K, H, W)``."""
    _check_image(image, "predict_whole")
    out = model(image)
    if out.shape[-2:] != image.shape[-2:]:
        out = F.interpolate(out, size=image.shape[-2:], mode="bilinear", align_corners=False)
    return out


@torch.no_grad()
def predict_slide(model: nn.Module, image: torch.Tensor, num_classes: int,
                  crop_size: int | Sequence[int] = 512,
                  stride: int | Sequence[int] = 341) -> torch.Tensor:
    """Sliding-window logits averaged over overlapping windows.

    Windows of ``crop_size`` (H, W) are placed every ``stride`` pixels, the last one flush with
    the bottom/right edge; an image smaller than the crop is zero-padded (zero is the mean after
    normalisation) and the padding cropped from the result. Overlaps are averaged.

    Args:
        image: ``(B, C, H, W)``. num_classes: ``K``.
        crop_size, stride: int or ``(H, W)``; ``stride`` must not exceed ``crop_size``.

    Returns:
        ``(B, K, H, W)`` float logits.
    """
    _check_image(image, "predict_slide")
    ch, cw = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
    sh, sw = (stride, stride) if isinstance(stride, int) else tuple(stride)
    if not (0 < sh <= ch and 0 < sw <= cw):
        raise ValueError(f"predict_slide: need 0 < stride <= crop_size, got stride {(sh, sw)} "
                         f"and crop_size {(ch, cw)}")
    b, _, h, w = image.shape
    ph, pw = max(ch - h, 0), max(cw - w, 0)
    if ph or pw:
        image = F.pad(image, (0, pw, 0, ph))
    H, W = image.shape[-2:]
    ys = list(range(0, H - ch, sh)) + [H - ch]
    xs = list(range(0, W - cw, sw)) + [W - cw]
    logits = image.new_zeros(b, num_classes, H, W)
    count = image.new_zeros(1, 1, H, W)
    for y in ys:
        for x in xs:
            window = image[:, :, y:y + ch, x:x + cw]
            logits[:, :, y:y + ch, x:x + cw] += predict_whole(model, window)
            count[:, :, y:y + ch, x:x + cw] += 1
    return (logits / count)[:, :, :h, :w]


@torch.no_grad()
def predict_multiscale(model: nn.Module, image: torch.Tensor, num_classes: int,
                       scales: Sequence[float] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75),
                       flip: bool = True, mode: str = "whole",
                       crop_size: int | Sequence[int] = 512,
                       stride: int | Sequence[int] = 341) -> torch.Tensor:
    """Softmax probabilities averaged over rescaled (and horizontally flipped) copies.

    Each copy is predicted with ``mode`` (``whole`` or ``slide``), resized back to the input
    size, turned into probabilities and averaged.

    Returns:
        ``(B, K, H, W)`` mean probabilities.
    """
    _check_image(image, "predict_multiscale")
    if not scales or any(s <= 0 for s in scales):
        raise ValueError(f"predict_multiscale: scales must be positive, got {tuple(scales)!r}")
    size = image.shape[-2:]
    total = image.new_zeros(image.shape[0], num_classes, *size)
    n = 0
    for s in scales:
        hs, ws = max(1, round(size[0] * s)), max(1, round(size[1] * s))
        x = F.interpolate(image, size=(hs, ws), mode="bilinear", align_corners=False)
        for flipped in ((False, True) if flip else (False,)):
            xi = x.flip(-1) if flipped else x
            out = predict(model, xi, num_classes, mode, crop_size, stride)
            if flipped:
                out = out.flip(-1)
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
            total += out.softmax(1)
            n += 1
    return total / n


def predict(model: nn.Module, image: torch.Tensor, num_classes: int, mode: str = "whole",
            crop_size: int | Sequence[int] = 512, stride: int | Sequence[int] = 341
            ) -> torch.Tensor:
    """Scores ``(B, K, H, W)`` with ``mode`` ``"whole"`` or ``"slide"``."""
    if mode == "whole":
        return predict_whole(model, image)
    if mode == "slide":
        return predict_slide(model, image, num_classes, crop_size, stride)
    raise ValueError(f"predict: mode must be 'whole' or 'slide', got {mode!r}")

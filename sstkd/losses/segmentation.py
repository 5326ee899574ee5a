"""Segmentation loss: cross-entropy with an ignore label, an auxiliary head, optional OHEM."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_4d


def _check_target(fn: str, logits: torch.Tensor, target: object) -> torch.Tensor:
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"{fn}: target must be a torch.Tensor, got {type(target).__name__}")
    if target.dim() != 3 or target.shape[0] != logits.shape[0]:
        raise ValueError(f"{fn}: target must have shape (B, H, W) with B = {logits.shape[0]}, "
                         f"got {tuple(target.shape)}")
    if target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(f"{fn}: target must be an integer tensor, got {target.dtype}")
    return target.long()


def _upsample(logits: torch.Tensor, size: torch.Size) -> torch.Tensor:
    if logits.shape[-2:] == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def ohem_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
                       thresh: float = 0.7, min_kept: int = 100_000) -> torch.Tensor:
    """Online hard example mining cross-entropy (the HRNet / OCRNet variant).

    Among labelled pixels, keeps those whose probability of the true class is below
    ``max(thresh, p_(min_kept))`` where ``p_(k)`` is the ``k``-th smallest true-class
    probability (0-based, clamped to the last one), and averages their cross-entropy.

    Args:
        logits: ``(B, K, H, W)`` at the target's size.
        target: ``(B, H, W)`` integer labels.
        ignore_index: label left out.
        thresh: probability threshold in (0, 1].
        min_kept: at least this many (hardest) pixels are kept, when there are that many.

    Returns:
        scalar tensor; 0 (with a gradient path) when no pixel is labelled.
    """
    pixel = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none").flatten()
    valid = target.flatten() != ignore_index
    losses = pixel[valid]
    if losses.numel() == 0:
        return logits.sum() * 0.0
    prob, order = torch.exp(-losses.detach()).sort()
    threshold = max(prob[min(min_kept, prob.numel() - 1)].item(), thresh)
    kept = losses[order][prob < threshold]
    return kept.mean() if kept.numel() else logits.sum() * 0.0


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor,
                      aux_logits: torch.Tensor | None = None, ignore_index: int = 255,
                      aux_weight: float = 0.4, ohem: bool = False, ohem_thresh: float = 0.7,
                      ohem_min_kept: int = 100_000) -> torch.Tensor:
    """Cross-entropy of the main head plus ``aux_weight`` times that of the auxiliary head.

    Logits smaller than the target are upsampled bilinearly (``align_corners=False``). The mean
    is over labelled pixels (``target != ignore_index``); with no labelled pixel the loss is 0.
    Computed in float32 (float64 for float64 logits).

    Args:
        logits: ``(B, K, h, w)``.
        target: ``(B, H, W)`` integer labels in ``[0, K)`` or ``ignore_index``.
        aux_logits: optional ``(B, K, h', w')`` auxiliary-head logits.
        ignore_index: label left out (255).
        aux_weight: weight of the auxiliary term (0.4, PSPNet).
        ohem: use :func:`ohem_cross_entropy` instead of the plain mean.
        ohem_thresh, ohem_min_kept: OHEM settings.

    Returns:
        scalar tensor.

    Example:
        >>> logits = torch.zeros(1, 2, 2, 2)
        >>> target = torch.tensor([[[0, 1], [255, 1]]])
        >>> round(float(segmentation_loss(logits, target)), 4)  # log 2
        0.6931
    """
    fn = "segmentation_loss"
    check_4d(fn, "logits", logits)
    target = _check_target(fn, logits, target)
    if aux_weight < 0:
        raise ValueError(f"{fn}: aux_weight must be >= 0, got {aux_weight!r}")
    if ohem and not 0 < ohem_thresh <= 1:
        raise ValueError(f"{fn}: ohem_thresh must be in (0, 1], got {ohem_thresh!r}")

    def one(z: torch.Tensor) -> torch.Tensor:
        z = _upsample(z, target.shape[-2:])
        z = z if z.dtype == torch.float64 else z.float()
        if ohem:
            return ohem_cross_entropy(z, target, ignore_index, ohem_thresh, ohem_min_kept)
        if not (target != ignore_index).any():
            return z.sum() * 0.0
        return F.cross_entropy(z, target, ignore_index=ignore_index)

    loss = one(logits)
    if aux_logits is not None and aux_weight > 0:
        check_4d(fn, "aux_logits", aux_logits)
        if aux_logits.shape[:2] != logits.shape[:2]:
            raise ValueError(f"{fn}: aux_logits must match logits in (B, K): logits "
                             f"{tuple(logits.shape)}, aux_logits {tuple(aux_logits.shape)}")
        loss = loss + aux_weight * one(aux_logits)
    return loss


class SegmentationLoss(nn.Module):
    """Module form of :func:`segmentation_loss` with fixed settings."""

    def __init__(self, ignore_index: int = 255, aux_weight: float = 0.4, ohem: bool = False,
                 ohem_thresh: float = 0.7, ohem_min_kept: int = 100_000):
        super().__init__()
        self.ignore_index = ignore_index
        self.aux_weight = aux_weight
        self.ohem = ohem
        self.ohem_thresh = ohem_thresh
        self.ohem_min_kept = ohem_min_kept

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                aux_logits: torch.Tensor | None = None) -> torch.Tensor:
        return segmentation_loss(logits, target, aux_logits, self.ignore_index, self.aux_weight,
                                 self.ohem, self.ohem_thresh, self.ohem_min_kept)

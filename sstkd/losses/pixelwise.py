"""Pixel-wise knowledge distillation: per-pixel KL between softened class distributions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_pair, check_positive


def pixelwise_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      tau: float = 1.0, ignore_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Pixel-wise KD: ``KL(softmax(z_T / tau) || softmax(z_S / tau)) * tau^2``, pixel mean.

    The KL divergence over the ``K`` classes is computed at every pixel and averaged over the
    pixels that are not ignored (SKD / IFVD, tau = 1, weight 10). The teacher is detached.
    Computed in float32 (or float64 for float64 inputs) whatever the input dtype.

    Args:
        student_logits: ``(B, K, h, w)``; resized bilinearly to ``(H, W)`` when it differs.
        teacher_logits: ``(B, K, H, W)``.
        tau: temperature, > 0.
        ignore_mask: optional bool ``(B, H, W)``; ``True`` marks pixels left out of the mean
            (e.g. ``target == 255``). When every pixel is ignored the loss is 0.

    Returns:
        scalar tensor, differentiable with respect to ``student_logits``.

    Example:
        >>> s, t = torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
        >>> float(pixelwise_kd_loss(s, t))
        0.0
    """
    fn = "pixelwise_kd_loss"
    tau = check_positive(fn, "tau", tau)
    s, t = check_pair(fn, student_logits, teacher_logits)
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    log_p_s = F.log_softmax(s.to(dtype) / tau, dim=1)
    log_p_t = F.log_softmax(t.detach().to(dtype) / tau, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)  # (B, H, W)
    if ignore_mask is None:
        return kl.mean() * tau ** 2
    if not isinstance(ignore_mask, torch.Tensor) or ignore_mask.shape != kl.shape:
        got = tuple(ignore_mask.shape) if isinstance(ignore_mask, torch.Tensor) else ignore_mask
        raise ValueError(f"{fn}: ignore_mask must be a bool tensor of shape (B, H, W) = "
                         f"{tuple(kl.shape)} (the teacher's), got {got}")
    if ignore_mask.dtype != torch.bool:
        raise TypeError(f"{fn}: ignore_mask must be torch.bool, got {ignore_mask.dtype}")
    keep = ~ignore_mask
    n = keep.sum()
    return (kl * keep).sum() / n.clamp(min=1) * tau ** 2


class PixelwiseKDLoss(nn.Module):
    """Module form of :func:`pixelwise_kd_loss` with a fixed temperature ``tau``."""

    def __init__(self, tau: float = 1.0):
        super().__init__()
        self.tau = check_positive("PixelwiseKDLoss", "tau", tau)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                ignore_mask: torch.Tensor | None = None) -> torch.Tensor:
        return pixelwise_kd_loss(student_logits, teacher_logits, self.tau, ignore_mask)

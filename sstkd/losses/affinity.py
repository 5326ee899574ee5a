"""Pair-wise affinity distillation (SKD): match cosine-similarity maps between pooled patches."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_4d, check_pair


def _patch_kernel(fn: str, size: tuple[int, int], scale: float | None,
                  patch_size: int | None) -> tuple[int, int]:
    if (scale is None) == (patch_size is None):
        raise ValueError(f"{fn}: give exactly one of scale and patch_size, got scale={scale!r}, "
                         f"patch_size={patch_size!r}")
    if patch_size is not None:
        if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(f"{fn}: patch_size must be a positive int, got {patch_size!r}")
        return patch_size, patch_size
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
        raise ValueError(f"{fn}: scale must be in (0, 1], got {scale!r}")
    return tuple(max(1, int(n * scale)) for n in size)


def pooled_patches(features: torch.Tensor, scale: float | None = 0.5,
                   patch_size: int | None = None) -> torch.Tensor:
    """Max-pool a feature map over non-overlapping patches (SKD's ``ceil_mode`` pooling).

    Args:
        features: ``(B, C, H, W)``.
        scale: patch side as a fraction of the map side (SKD: 0.5 gives a 2 x 2 patch grid).
        patch_size: fixed patch side in pixels instead of ``scale``.

    Returns:
        ``(B, C, ceil(H / kh), ceil(W / kw))``.
    """
    fn = "pooled_patches"
    x = check_4d(fn, "features", features)
    kernel = _patch_kernel(fn, tuple(x.shape[-2:]), scale, patch_size)
    return F.max_pool2d(x, kernel_size=kernel, stride=kernel, ceil_mode=True)


def cosine_affinity(features: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Cosine similarities between all spatial positions.

    Args:
        features: ``(B, C, H, W)``.
        eps: norm floor of ``F.normalize``.

    Returns:
        ``(B, P, P)`` with ``P = H * W``; entry ``(i, j)`` is ``cos(f_i, f_j)``.
    """
    x = check_4d("cosine_affinity", "features", features)
    x = F.normalize(x.flatten(2), dim=1, eps=eps)  # (B, C, P)
    return x.transpose(1, 2) @ x


def pairwise_affinity_loss(student: torch.Tensor, teacher: torch.Tensor,
                           scale: float | None = 0.5, patch_size: int | None = None
                           ) -> torch.Tensor:
    """SKD pair-wise loss: MSE between student and teacher patch-affinity matrices.

    Both maps are max-pooled over the same patch grid (:func:`pooled_patches`), L2-normalised
    over channels, and turned into ``(B, P, P)`` cosine-similarity matrices; the loss is the mean
    squared difference (SKD's ``sum / P^2 / B``). Channel counts may differ. The teacher is
    detached; computed in float32 (float64 for float64 inputs).

    Args:
        student: ``(B, C_s, h, w)``; resized bilinearly to ``(H, W)`` when it differs.
        teacher: ``(B, C_t, H, W)``.
        scale: patch side as a fraction of the teacher map side (SKD default 0.5).
        patch_size: fixed patch side in pixels instead of ``scale``.

    Returns:
        scalar tensor, differentiable with respect to ``student``.

    Example:
        >>> s, t = torch.randn(2, 8, 6, 6), torch.randn(2, 16, 6, 6)
        >>> pairwise_affinity_loss(s, t, scale=None, patch_size=2).shape
        torch.Size([])
    """
    fn = "pairwise_affinity_loss"
    s, t = check_pair(fn, student, teacher, same_channels=False)
    kernel = _patch_kernel(fn, tuple(t.shape[-2:]), scale, patch_size)
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    a_s = cosine_affinity(F.max_pool2d(s.to(dtype), kernel, kernel, ceil_mode=True))
    a_t = cosine_affinity(F.max_pool2d(t.detach().to(dtype), kernel, kernel, ceil_mode=True))
    return F.mse_loss(a_s, a_t)


class PairwiseAffinityLoss(nn.Module):
    """Module form of :func:`pairwise_affinity_loss` with a fixed patch grid."""

    def __init__(self, scale: float | None = 0.5, patch_size: int | None = None):
        super().__init__()
        _patch_kernel("PairwiseAffinityLoss", (1, 1), scale, patch_size)  # validates the grid
        self.scale = scale
        self.patch_size = patch_size

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return pairwise_affinity_loss(student, teacher, self.scale, self.patch_size)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, patch_size={self.patch_size}"


__all__ = ["cosine_affinity", "pairwise_affinity_loss", "pooled_patches", "PairwiseAffinityLoss"]

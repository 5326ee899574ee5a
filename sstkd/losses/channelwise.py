"""Channel-wise distillation (CWD, Shu et al., ICCV 2021): per-channel spatial distributions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_pair, check_positive


def channelwise_kd_loss(student: torch.Tensor, teacher: torch.Tensor,
                        tau: float = 4.0) -> torch.Tensor:
    """CWD: KL between per-channel spatial softmax maps, summed over space, times ``tau^2``.

    Every channel map is turned into a distribution over its ``H * W`` positions with
    ``softmax(x / tau)``; the loss is ``tau^2 / (B * C) * sum_{b,c} KL(p_T[b,c] || p_S[b,c])``
    (the official implementation's normalisation). The teacher is detached. Computed in float32
    (float64 for float64 inputs).

    Args:
        student: ``(B, C, h, w)`` logits (or features already projected to ``C`` channels);
            resized bilinearly to ``(H, W)`` when it differs.
        teacher: ``(B, C, H, W)``.
        tau: temperature, > 0 (CWD uses 4 for segmentation logits).

    Returns:
        scalar tensor, differentiable with respect to ``student``.

    Example:
        >>> x = torch.randn(2, 3, 4, 4)
        >>> float(channelwise_kd_loss(x, x))
        0.0
    """
    fn = "channelwise_kd_loss"
    tau = check_positive(fn, "tau", tau)
    s, t = check_pair(fn, student, teacher)
    b, c = t.shape[:2]
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    log_p_s = F.log_softmax(s.to(dtype).reshape(b, c, -1) / tau, dim=2)
    log_p_t = F.log_softmax(t.detach().to(dtype).reshape(b, c, -1) / tau, dim=2)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum()
    return kl * tau ** 2 / (b * c)


class ChannelwiseKDLoss(nn.Module):
    """Module form of :func:`channelwise_kd_loss` with a fixed temperature ``tau``."""

    def __init__(self, tau: float = 4.0):
        super().__init__()
        self.tau = check_positive("ChannelwiseKDLoss", "tau", tau)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return channelwise_kd_loss(student, teacher, self.tau)

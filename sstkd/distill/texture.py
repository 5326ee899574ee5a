"""SSTKD texture knowledge: the CDM (contourlet) and DTIEM (equalisation) modules and losses.

Both modules are fixed (no learned weights) and built on :mod:`sstkd_ops`; the only learned
part is the student adapter (1x1 conv + BN from the student's channels to the teacher's,
trained with the student and dropped after training). Teacher features are detached and
their texture descriptions are computed under ``torch.no_grad()``, so nothing is kept for a
backward through the teacher.

The losses themselves are :func:`sstkd.losses.structural_loss` and
:func:`sstkd.losses.statistical_loss` (forms, norms and scale behaviour documented there).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

import sstkd_ops
from sstkd_ops import pdfb_multiple, pdfb_pad

from ..losses.texture import STRUCTURAL_NORMS, standardize_planes, statistical_loss, structural_loss


def _as_float(x: torch.Tensor) -> torch.Tensor:
    """The texture ops run in float32/float64: half-precision features (AMP) are promoted."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


class StudentAdapter(nn.Module):
    """1x1 conv + BatchNorm mapping student features ``(B, Cs, H, W)`` to ``(B, Ct, H, W)``."""

    def __init__(self, student_channels: int, teacher_channels: int):
        super().__init__()
        if student_channels < 1 or teacher_channels < 1:
            raise ValueError(f"StudentAdapter: channel counts must be >= 1, got student "
                             f"{student_channels}, teacher {teacher_channels}")
        self.conv = nn.Conv2d(student_channels, teacher_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(teacher_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class ContourletDecomposition(nn.Module):
    """CDM: the contourlet transform of every channel of a feature map.

    Inputs whose H, W are not multiples of :func:`sstkd_ops.contourlet.pdfb_multiple` are
    reflect-padded at the bottom/right first (:func:`sstkd_ops.contourlet.pdfb_pad`).

    Forward:
        ``x (B, C, H, W)`` -> ``(lowpass, bands)`` as :func:`sstkd_ops.pdfb_dec`.
    """

    def __init__(self, pfilt: str = "9-7", dfilt: str = "pkva", nlevs: Sequence[int] = (3, 3),
                 backend: str | None = None):
        super().__init__()
        self.pfilt, self.dfilt, self.nlevs = pfilt, dfilt, tuple(int(n) for n in nlevs)
        self.backend = backend
        self.multiple = pdfb_multiple(self.nlevs, dfilt)

    def forward(self, x: torch.Tensor):
        x = _as_float(x)
        if x.shape[-2] % self.multiple or x.shape[-1] % self.multiple:
            x = pdfb_pad(x, self.nlevs, self.dfilt)[0]
        return sstkd_ops.pdfb_dec(x, self.pfilt, self.dfilt, self.nlevs, backend=self.backend)

    def extra_repr(self) -> str:
        return f"pfilt={self.pfilt!r}, dfilt={self.dfilt!r}, nlevs={self.nlevs}"


class TextureIntensityEqualization(nn.Module):
    """DTIEM: :func:`sstkd_ops.texture_equalize` as a module (levels carry no gradient)."""

    def __init__(self, num_levels: int = 32, iters: int = 3, theta: float = 0.5,
                 offsets: Sequence[Sequence[int]] = ((1, 1),), backend: str | None = None):
        super().__init__()
        self.num_levels, self.iters, self.theta = int(num_levels), int(iters), float(theta)
        self.offsets = tuple((int(d[0]), int(d[1])) for d in offsets)
        self.backend = backend

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None
                ) -> sstkd_ops.TextureStats:
        """``x (B, C, H, W)`` -> :class:`sstkd_ops.TextureStats`; ``weights (B, H, W)``: the
        importance of each pixel in the counts (``None``: uniform)."""
        return sstkd_ops.texture_equalize(_as_float(x), self.num_levels, self.iters, self.theta,
                                          self.offsets, weights=weights, backend=self.backend)

    def extra_repr(self) -> str:
        return (f"num_levels={self.num_levels}, iters={self.iters}, theta={self.theta}, "
                f"offsets={self.offsets}")


def _align(fn: str, tap: str, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if s.dim() != 4 or t.dim() != 4 or s.shape[0] != t.shape[0]:
        raise ValueError(f"{fn}: features at tap '{tap}' cannot be aligned: student "
                         f"{tuple(s.shape)}, teacher {tuple(t.shape)} (expected (B, C, H, W) "
                         f"with the same batch size)")
    if s.shape[-2:] != t.shape[-2:]:
        s = F.interpolate(s, size=t.shape[-2:], mode="bilinear", align_corners=False)
    return s


class TextureDistiller(nn.Module):
    """Structural (CDM) and statistical (DTIEM) texture losses at one or more taps.

    Args:
        student_channels / teacher_channels: channels of each tap, e.g. ``{'layer1': 64}``
            and ``{'layer1': 256}``.
        taps: feature names to distil (default ``('layer1',)``).
        structural / statistical: whether each loss is computed (weight > 0).
        pfilt, dfilt, nlevs: contourlet settings; num_levels, iters, theta, offsets, beta:
            DTIEM settings (see :class:`TextureIntensityEqualization`, :func:`statistical_loss`).
        backend: ``sstkd_ops`` backend for both ops (``None``: ``$SSTKD_BACKEND`` / auto).
        sampler_anchors, sampler_radius, sampler_gain: DTIEM's anchor-based importance sampler
            (:func:`sstkd_ops.texture_importance` on the teacher's features; the same weights
            enter the student's and the teacher's counts); ``sampler_anchors=0`` or
            ``sampler_gain=0``: off (uniform counts).
        str_norm: how the structural loss is made independent of the feature scale, one of
            :data:`sstkd.losses.texture.STRUCTURAL_NORMS` (see :func:`structural_loss`).

    Forward:
        ``(student_features, teacher_features)`` dicts -> ``{'str': loss, 'sta': loss}``
        (only the enabled ones), each averaged over the taps.
    """

    def __init__(self, student_channels: dict[str, int], teacher_channels: dict[str, int],
                 taps: Sequence[str] = ("layer1",), structural: bool = True,
                 statistical: bool = True, pfilt: str = "9-7", dfilt: str = "pkva",
                 nlevs: Sequence[int] = (3, 3), num_levels: int = 32, iters: int = 3,
                 theta: float = 0.5, offsets: Sequence[Sequence[int]] = ((1, 1),),
                 beta: float = 1.0, backend: str | None = None, str_norm: str = "standardize",
                 sampler_anchors: int = 0, sampler_radius: float = 2.0,
                 sampler_gain: float = 1.0):
        super().__init__()
        self.sampler = ((int(sampler_anchors), float(sampler_radius), float(sampler_gain))
                        if sampler_anchors > 0 and sampler_gain > 0 else None)
        if str_norm not in STRUCTURAL_NORMS:
            raise ValueError(f"TextureDistiller: argument 'str_norm' expected one of "
                             f"{STRUCTURAL_NORMS}, got {str_norm!r}")
        self.str_norm = str_norm
        self.taps = tuple(taps)
        if not self.taps:
            raise ValueError("TextureDistiller: argument 'taps' expected at least one tap, "
                             "got none")
        for tap in self.taps:
            for who, channels in (("student", student_channels), ("teacher", teacher_channels)):
                if tap not in channels:
                    raise ValueError(f"TextureDistiller: tap '{tap}' is not a {who} feature; "
                                     f"{who} has {sorted(channels)}")
        self.adapters = nn.ModuleDict({
            tap: StudentAdapter(student_channels[tap], teacher_channels[tap])
            for tap in self.taps})
        self.cdm = ContourletDecomposition(pfilt, dfilt, nlevs, backend) if structural else None
        self.dtiem = (TextureIntensityEqualization(num_levels, iters, theta, offsets, backend)
                      if statistical else None)
        self.beta = float(beta)

    def forward(self, student_features: dict[str, torch.Tensor],
                teacher_features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        losses: dict[str, list[torch.Tensor]] = {"str": [], "sta": []}
        for tap in self.taps:
            if tap not in student_features or tap not in teacher_features:
                raise ValueError(f"TextureDistiller: tap '{tap}' missing from the features "
                                 f"(student has {sorted(student_features)}, teacher has "
                                 f"{sorted(teacher_features)})")
            t = teacher_features[tap].detach()
            s = _align("TextureDistiller", tap, self.adapters[tap](student_features[tap]), t)
            if self.cdm is not None:
                s_in, t_in = ((standardize_planes(_as_float(s)), standardize_planes(_as_float(t)))
                              if self.str_norm == "standardize" else (s, t))
                with torch.no_grad():
                    t_dec = self.cdm(t_in)
                losses["str"].append(structural_loss(self.cdm(s_in), t_dec, self.str_norm))
            if self.dtiem is not None:
                w = None
                if self.sampler is not None:  # importance from the teacher, for both sides
                    w = sstkd_ops.texture_importance(_as_float(t), *self.sampler)
                with torch.no_grad():
                    t_stats = self.dtiem(t, w)
                losses["sta"].append(statistical_loss(self.dtiem(s, w), t_stats, self.beta))
        return {k: torch.stack(v).mean() for k, v in losses.items() if v}

"""SSTKD's texture losses: structural (contourlet subbands) and statistical (DTIEM).

Forms (METHOD.md sections 3 and 4; ours where the paper is silent):

* structural: ``L_str = sum_n mean_k e(B_nk(A(F_S)), B_nk(F_T)) + e(low(A(F_S)), low(F_T))``
  over the pyramid levels ``n`` and directional subbands ``k`` of the contourlet transform,
  where the error ``e`` is, by ``norm`` (:data:`STRUCTURAL_NORMS`):

  - ``'energy'`` (default) the MSE relative to the teacher subband's energy, per image,
    ``mean((s - t)^2) / (mean(t^2) + eps)`` with ``eps = 1e-6 x`` the mean energy of all the
    teacher's subbands of that image, averaged over the images: a number in units of
    "fraction of the teacher's signal", the same for features of any scale (a subband holding
    1 % of the energy counts as much as one holding 50 %, so the fine directional structure is
    not drowned by the low-pass);
  - ``'standardize'``: plain MSE after standardising every ``(b, c)`` plane of both feature
    maps to zero mean and unit variance (as channel-wise / attention-transfer distillation
    normalise their maps);
  - ``'none'``: plain MSE of the raw coefficients (the form of earlier releases; its size
    follows the square of the feature scale);
* statistical: ``L_sta = MSE(Q(A(F_S)), Q(F_T)) + beta * mean_b sum_d ||M_S - M_T||_F^2`` with
  ``Q`` the equalised texture-intensity map and ``M`` the co-occurrence matrices. Both are
  built on the cosine texture intensity, so this loss is already independent of the feature
  scale (``L_sta(a F_S, b F_T) = L_sta(F_S, F_T)`` for ``a, b > 0``).

The modules that produce their inputs (CDM, DTIEM, the student adapter) are in
:mod:`sstkd.distill.texture`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import sstkd_ops

STRUCTURAL_NORMS = ("energy", "standardize", "none")
_ENERGY_EPS = 1e-6  # relative to the mean energy of all teacher subbands
_STANDARDIZE_EPS = 1e-5  # variance floor of a (b, c) plane, as BatchNorm's


def standardize_planes(x: torch.Tensor) -> torch.Tensor:
    """Every ``(b, c)`` plane of ``x (B, C, H, W)`` to zero mean and unit variance."""
    mean = x.mean(dim=(-2, -1), keepdim=True)
    var = x.var(dim=(-2, -1), keepdim=True, unbiased=False)
    return (x - mean) * torch.rsqrt(var + _STANDARDIZE_EPS)


def structural_loss(student, teacher, norm: str = "energy") -> torch.Tensor:
    """``L_str`` between two contourlet decompositions ``(lowpass, bands)`` of equal shapes.

    ``norm='energy'`` divides each subband's MSE by the teacher subband's mean energy (plus
    ``1e-6`` x the mean energy of all teacher subbands), per image, and averages over the
    images (a per-sample mean: two half batches average to the full batch's loss, as
    data-parallel training needs); ``'standardize'`` and ``'none'`` use
    the plain MSE (the standardisation happens before the transform, in
    :class:`TextureDistiller`). See the module docstring.
    """
    if norm not in STRUCTURAL_NORMS:
        raise ValueError(f"structural_loss: argument 'norm' expected one of {STRUCTURAL_NORMS}, "
                         f"got {norm!r}")
    s_low, s_bands = student
    t_low, t_bands = teacher
    if len(s_bands) != len(t_bands):
        raise ValueError(f"structural_loss: student has {len(s_bands)} pyramid levels, teacher "
                         f"{len(t_bands)}")
    pairs = [(s_low, t_low)] + [(s, t) for sl, tl in zip(s_bands, t_bands)
                                for s, t in zip(sl, tl)]
    if norm == "energy":  # per image, so that the loss is a mean over samples (as DDP needs)
        err = [(s - t).pow(2).flatten(1).mean(1) for s, t in pairs]
        energy = [t.detach().pow(2).flatten(1).mean(1) for _, t in pairs]
        eps = _ENERGY_EPS * torch.stack(energy).mean(0)
        errors = [(e / (en + eps)).mean() for e, en in zip(err, energy)]
    else:
        errors = [F.mse_loss(s, t) for s, t in pairs]
    loss, i = errors[0], 1
    for level in s_bands:
        loss = loss + torch.stack(errors[i:i + len(level)]).mean()
        i += len(level)
    return loss


def statistical_loss(student: sstkd_ops.TextureStats, teacher: sstkd_ops.TextureStats,
                     beta: float = 1.0) -> torch.Tensor:
    """``L_sta``: MSE of the equalised maps + ``beta`` x squared distance of co-occurrences."""
    loss = F.mse_loss(student.q, teacher.q)
    if beta:
        loss = loss + beta * (student.cooc - teacher.cooc).pow(2).sum(dim=(1, 2, 3)).mean()
    return loss

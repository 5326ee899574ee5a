"""Triton backend of the texture-statistics ops: the fused building blocks under the names
the fused implementations (:mod:`sstkd_ops.texture.fused`) call.

Same signatures and semantics as the compiled ops (``csrc/texture/texture_stats.cpp``),
defined as ``torch.library`` custom ops (suffix ``_triton``); their hand-written backward and
fake functions are registered by :func:`sstkd_ops.texture.autograd.register_triton`. Runs on
CUDA, or on CPU tensors under ``TRITON_INTERPRET=1`` (tests). Kernels: :mod:`.cos_sim`,
:mod:`.qco` (QCO 1-D / 2-D, TEM), :mod:`.dtiem`; shared helpers in :mod:`.common`.
"""

from __future__ import annotations

from .cos_sim import texstat_cos_sim, texstat_cos_sim_backward
from .dtiem import texstat_dtiem, texstat_dtiem_backward
from .qco import texstat_qco, texstat_qco_backward, texstat_qco_tem, texstat_qco_tem_backward

__all__ = ["texstat_cos_sim", "texstat_cos_sim_backward", "texstat_dtiem",
           "texstat_dtiem_backward", "texstat_qco", "texstat_qco_backward", "texstat_qco_tem",
           "texstat_qco_tem_backward"]

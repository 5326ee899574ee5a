"""Texture statistics: STLNet's quantize-and-count (QCO) and DTIEM intensity equalisation.

* :mod:`.ops` -- the public ops and their argument checks;
* :mod:`.sampler` -- DTIEM's anchor-based importance sampler (weights for the counts);
* :mod:`.reference` -- the plain-PyTorch reference (oracle and fallback);
* :mod:`.fused` -- the fused implementations (``cpu``, ``cuda``, ``triton``) composing the
  building blocks of each backend;
* :mod:`.autograd` -- backward and fake functions of the fused building blocks, registered by
  :func:`.autograd.register` below;
* :mod:`.triton` -- the Triton kernels (the C++ and CUDA ones are in ``csrc/texture/``).
"""

from . import autograd
from .ops import (
    MAX_LEVELS,
    QCO1d,
    TextureStats,
    qco_1d,
    qco_1d_tem,
    qco_2d,
    set_finite_checks,
    texture_equalize,
)
from .sampler import texture_importance

__all__ = ["MAX_LEVELS", "QCO1d", "TextureStats", "qco_1d", "qco_1d_tem", "qco_2d",
           "set_finite_checks", "texture_equalize", "texture_importance"]

autograd.register()

"""Texture statistics: STLNet's quantize-and-count (QCO) and DTIEM intensity equalisation.

* :mod:`.ops` -- the public ops and their argument checks;
* :mod:`.reference` -- the plain-PyTorch reference (oracle and fallback);
* :mod:`.autograd` -- backward and fake functions of the fused building blocks;
* :mod:`.triton` -- the Triton kernels (the C++ and CUDA ones are in ``csrc/texture/``).
"""

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

__all__ = ["MAX_LEVELS", "QCO1d", "TextureStats", "qco_1d", "qco_1d_tem", "qco_2d",
           "set_finite_checks", "texture_equalize"]

"""Distillation: SSTKD's texture modules and losses, and the per-step distiller.

- :mod:`sstkd.distill.texture` -- CDM (contourlet) and DTIEM (equalisation) modules, the
  student adapter and the structural / statistical losses.
- :mod:`sstkd.distill.distiller` -- :class:`Distiller`, the whole per-step objective.
"""

from .distiller import LOSS_TERMS, Distiller
from .texture import (
    ContourletDecomposition,
    StudentAdapter,
    TextureDistiller,
    TextureIntensityEqualization,
    statistical_loss,
    structural_loss,
)

__all__ = [
    "LOSS_TERMS",
    "ContourletDecomposition",
    "Distiller",
    "StudentAdapter",
    "TextureDistiller",
    "TextureIntensityEqualization",
    "statistical_loss",
    "structural_loss",
]

"""Distillation: SSTKD's texture modules and losses, and the per-step distiller.

- :mod:`sstkd.distill.texture` -- CDM (contourlet) and DTIEM (equalisation) modules, the
  student adapter and the structural / statistical losses.
- :mod:`sstkd.distill.distiller` -- :class:`Distiller`, the whole per-step objective.
- :mod:`sstkd.distill.hooks` -- :class:`SSTKDLoss`, the texture losses for your own training
  loop (any teacher / student, features taken by forward hooks).
"""

from .distiller import LOSS_TERMS, Distiller, build_distiller
from .hooks import SSTKDLoss
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
    "SSTKDLoss",
    "StudentAdapter",
    "TextureDistiller",
    "TextureIntensityEqualization",
    "build_distiller",
    "statistical_loss",
    "structural_loss",
]

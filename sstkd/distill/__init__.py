"""Distillation: SSTKD's texture modules and losses, and the per-step distiller.

- :mod:`sstkd.distill.texture` -- CDM (contourlet) and DTIEM (equalisation) modules, the
  student adapter and the structural / statistical losses.
"""

from .texture import (
    ContourletDecomposition,
    StudentAdapter,
    TextureDistiller,
    TextureIntensityEqualization,
    statistical_loss,
    structural_loss,
)

__all__ = [
    "ContourletDecomposition",
    "StudentAdapter",
    "TextureDistiller",
    "TextureIntensityEqualization",
    "statistical_loss",
    "structural_loss",
]

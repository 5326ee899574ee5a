"""sstkd: Structural and Statistical Texture Knowledge Distillation for semantic segmentation.

Subpackages:

- :mod:`sstkd.models` -- dilated ResNet / MobileNetV2 backbones, PSPNet / DeepLabV3 heads, an
  auxiliary FCN head, a registry by name (``build_model("pspnet_resnet18")``), checkpoint
  loading and a FLOPs counter.
- :mod:`sstkd.data` -- Cityscapes, Pascal VOC (+SBD), ADE20K, CamVid loaders, synthetic texture
  mosaics, and seeded joint transforms (``build_dataset("camvid", root, "train")``).
- :mod:`sstkd.metrics`, :mod:`sstkd.inference`, :mod:`sstkd.evaluate` -- confusion-matrix metrics,
  whole / sliding-window / multi-scale inference and the ``python -m sstkd.evaluate`` CLI.

- :mod:`sstkd.distill` -- SSTKD's texture modules and losses; :class:`sstkd.SSTKDLoss` adds them
  to your own training loop (any teacher / student, features tapped by module name).

``sstkd`` depends on ``sstkd_ops`` (never the other way round).
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["SSTKDLoss", "__version__"]


def __getattr__(name: str) -> Any:
    # imported on first use: ``import sstkd.config`` stays free of torch and the ops
    if name == "SSTKDLoss":
        from .distill.hooks import SSTKDLoss
        return SSTKDLoss
    raise AttributeError(f"module 'sstkd' has no attribute {name!r}")

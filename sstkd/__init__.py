"""sstkd: Structural and Statistical Texture Knowledge Distillation for semantic segmentation.

Subpackages:

- :mod:`sstkd.models` -- dilated ResNet / MobileNetV2 backbones, PSPNet / DeepLabV3 heads, an
  auxiliary FCN head, a registry by name (``build_model("pspnet_resnet18")``), checkpoint
  loading and a FLOPs counter.
- :mod:`sstkd.data` -- Cityscapes, Pascal VOC (+SBD), ADE20K, CamVid loaders, synthetic texture
  mosaics, and seeded joint transforms (``build_dataset("camvid", root, "train")``).
- :mod:`sstkd.metrics`, :mod:`sstkd.inference`, :mod:`sstkd.evaluate` -- confusion-matrix metrics,
  whole / sliding-window / multi-scale inference and the ``python -m sstkd.evaluate`` CLI.

``sstkd`` depends on ``sstkd_ops`` (never the other way round).
"""

__version__ = "0.1.0"

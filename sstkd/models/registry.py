"""Build segmentation models by name: ``{pspnet,deeplabv3}_{resnet18,34,50,101,mobilenetv2}``.

A name may carry a width multiplier, ``<model>@<width>`` (e.g. ``pspnet_resnet18@0.5``): every
backbone stage and the head get ``width`` times their channels (rounded to multiples of 8).
The suffix works wherever a model name is accepted (configs, ``--set model.student=...``,
checkpoints, ``sstkd.evaluate --model``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from .checkpoint import load_pretrained_backbone
from .flops import count_macs, count_parameters
from .heads import ASPPHead, PSPHead
from .mobilenetv2 import MobileNetV2
from .resnet import ResNet, scale_channels
from .segmentor import SegmentationModel

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "mobilenetv2")
HEADS = ("pspnet", "deeplabv3")
MODEL_NAMES = tuple(f"{h}_{b}" for h in HEADS for b in BACKBONES)
# ASPP rates per output stride (12/24/36 at OS 8, the DeepLabV3 paper's doubling of 6/12/18).
ASPP_RATES = {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}


def list_models() -> tuple[str, ...]:
    """Base names accepted by :func:`build_model` (each also as ``<name>@<width>``)."""
    return MODEL_NAMES


def parse_model_name(name: object) -> tuple[str, float]:
    """``"pspnet_resnet18@0.5"`` -> ``("pspnet_resnet18", 0.5)``; no suffix means width 1.

    Raises:
        ValueError: not a registered base name, or a width that is not a number in (0, 4].
    """
    if not isinstance(name, str):
        raise ValueError(f"build_model: model name must be a string, got {name!r}")
    base, sep, suffix = name.partition("@")
    if base not in MODEL_NAMES:
        raise ValueError(f"build_model: unknown model {name!r}; expected one of {MODEL_NAMES}, "
                         "optionally with a width suffix such as '@0.5'")
    if not sep:
        return base, 1.0
    try:
        width = float(suffix)
    except ValueError:
        width = math.nan
    if not 0 < width <= 4:
        raise ValueError(f"build_model: width suffix of {name!r} must be a number in (0, 4], "
                         f"got {suffix!r}")
    return base, width


def model_name(base: str, width: float = 1.0) -> str:
    """The canonical name of ``base`` at ``width`` (no suffix at width 1)."""
    return base if width == 1.0 else f"{base}@{width:g}"


def build_backbone(name: str, output_stride: int = 8, deep_stem: bool = False,
                   multi_grid: Sequence[int] | None = None,
                   norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
                   width: float = 1.0) -> nn.Module:
    """A backbone by name (``resnet18`` ... ``resnet101``, ``mobilenetv2``) and width."""
    if name.startswith("resnet") and name[6:].isdigit():
        return ResNet(int(name[6:]), output_stride, deep_stem, multi_grid, norm_layer, width)
    if name == "mobilenetv2":
        if deep_stem or multi_grid:
            raise ValueError("build_backbone: deep_stem / multi_grid apply to ResNets only, "
                             f"not {name!r}")
        return MobileNetV2(output_stride, norm_layer, width)
    raise ValueError(f"build_backbone: unknown backbone {name!r}; expected one of {BACKBONES}")


def build_model(name: str, num_classes: int = 19, output_stride: int = 8, aux: bool = True,
                pretrained_backbone: str | Path | None = None, deep_stem: bool = False,
                multi_grid: Sequence[int] | None = None,
                norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d) -> SegmentationModel:
    """Build a registered segmentation model.

    Args:
        name: ``"<head>_<backbone>"``, see :func:`list_models` (e.g. ``"pspnet_resnet18"``),
            optionally ``"<head>_<backbone>@<width>"`` for a width-reduced (or widened) model.
        num_classes: classes ``K`` (19 Cityscapes, 11 CamVid, 21 VOC, 150 ADE20K).
        output_stride: 8 (default) or 16 (32 for a plain, undilated backbone).
        aux: add the auxiliary FCN head on ``layer3`` (training only).
        pretrained_backbone: local ImageNet checkpoint in torchvision layout, loaded strictly
            (width 1 only).
        deep_stem: ResNet deep stem (3x3 convs); incompatible with torchvision checkpoints.
        multi_grid: dilation multipliers for ResNet ``layer4`` blocks, e.g. ``(1, 2, 4)``.
        norm_layer: normalisation constructor (e.g. ``nn.SyncBatchNorm``).

    Returns:
        a :class:`SegmentationModel` whose ``name`` and ``build_kwargs`` go into checkpoints.

    Example:
        >>> m = build_model("deeplabv3_resnet18", num_classes=11)
        >>> m.feature_channels
        {'layer1': 64, 'layer2': 128, 'layer3': 256, 'layer4': 512, 'head': 256, 'logits': 11}
    """
    base, width = parse_model_name(name)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"build_model: num_classes must be a positive int, got {num_classes!r}")
    if pretrained_backbone is not None and width != 1.0:
        raise ValueError(f"build_model: pretrained_backbone needs a width-1 model (ImageNet "
                         f"checkpoints have the standard channel counts), got {name!r}")
    head_name, backbone_name = base.split("_", 1)
    backbone = build_backbone(backbone_name, output_stride, deep_stem, multi_grid, norm_layer,
                              width)
    if pretrained_backbone is not None:
        load_pretrained_backbone(backbone, pretrained_backbone)
    cin = backbone.channels["layer4"]
    if head_name == "pspnet":
        head = PSPHead(cin, num_classes, scale_channels(512, width), norm_layer=norm_layer)
    else:
        head = ASPPHead(cin, num_classes, scale_channels(256, width),
                        rates=ASPP_RATES[output_stride], norm_layer=norm_layer)
    model = SegmentationModel(backbone, head, num_classes, aux, norm_layer,
                              model_name(base, width))
    model.build_kwargs = {"num_classes": num_classes, "output_stride": output_stride, "aux": aux,
                          "deep_stem": deep_stem,
                          "multi_grid": list(multi_grid) if multi_grid else None}
    return model


def model_complexity(name: str, input_size: tuple[int, int] = (512, 512), **kwargs) -> dict:
    """Parameters and GFLOPs (multiply-adds, eval mode) of a registered model.

    The model is built on the meta device, so even ResNet-101 models cost nothing.

    Returns:
        ``{'name', 'params', 'params_inference', 'gflops', 'input_size'}``; ``params`` counts the
        auxiliary head, ``params_inference`` does not.
    """
    with torch.device("meta"):
        model = build_model(name, **kwargs)
    aux = count_parameters(model.aux_head) if model.aux_head is not None else 0
    total = count_parameters(model)
    return {"name": name, "params": total, "params_inference": total - aux,
            "gflops": count_macs(model, input_size) / 1e9, "input_size": tuple(input_size)}


def complexity_table(names: Sequence[str] = MODEL_NAMES, input_size: tuple[int, int] = (512, 512),
                     **kwargs) -> str:
    """A Markdown table of :func:`model_complexity` for ``names``."""
    rows = ["| model | params (M) | params w/o aux (M) | GFLOPs |", "| --- | ---: | ---: | ---: |"]
    for n in names:
        c = model_complexity(n, input_size, **kwargs)
        rows.append(f"| {n} | {c['params'] / 1e6:.2f} | {c['params_inference'] / 1e6:.2f} "
                    f"| {c['gflops']:.1f} |")
    return "\n".join(rows)

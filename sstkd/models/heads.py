"""Segmentation heads: PSPNet pyramid pooling, DeepLabV3 ASPP and the auxiliary FCN head.

Every head splits into ``features(x)`` (the last feature map before the classifier, tapped as
``'head'`` for distillation) and ``classifier`` (dropout + 1x1 conv to the classes), so that
``head(x) == head.classifier(head.features(x))``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

NormLayer = Callable[[int], nn.Module]


def conv_bn_relu(cin: int, cout: int, kernel: int = 1, dilation: int = 1,
                 norm_layer: NormLayer = nn.BatchNorm2d) -> nn.Sequential:
    """conv (no bias) - norm - ReLU with 'same' padding."""
    pad = (kernel - 1) // 2 * dilation
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),
                         norm_layer(cout), nn.ReLU(inplace=True))


class _Head(nn.Module):
    channels: int  # channels of ``features(x)``

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, h, w)`` -> logits ``(B, num_classes, h, w)``."""
        return self.classifier(self.features(x))


class PSPHead(_Head):
    """Pyramid pooling module (bins 1/2/3/6) + 3x3 bottleneck + classifier (PSPNet).

    Each bin pools the input to ``b x b``, reduces it to ``in_channels // 4`` channels and
    upsamples it back; the concatenation with the input (``2 * in_channels``) goes through a
    3x3 conv to ``channels`` (512), dropout 0.1 and a 1x1 classifier.

    Shapes: ``(B, C_in, h, w)`` -> features ``(B, channels, h, w)`` -> logits ``(B, K, h, w)``.
    """

    def __init__(self, in_channels: int, num_classes: int, channels: int = 512,
                 bins: Sequence[int] = (1, 2, 3, 6), dropout: float = 0.1,
                 norm_layer: NormLayer = nn.BatchNorm2d):
        super().__init__()
        reduced = in_channels // len(bins)
        self.bins = tuple(bins)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), conv_bn_relu(in_channels, reduced, 1,
                                                                 norm_layer=norm_layer))
            for b in self.bins)
        self.bottleneck = conv_bn_relu(in_channels + reduced * len(self.bins), channels, 3,
                                       norm_layer=norm_layer)
        self.channels = channels
        self.classifier = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(channels, num_classes, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [F.interpolate(s(x), size=size, mode="bilinear", align_corners=False)
                  for s in self.stages]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))


class ASPPHead(_Head):
    """DeepLabV3 head: ASPP (1x1, three dilated 3x3, image pooling) + 3x3 conv + classifier.

    Rates default to (12, 24, 36), the setting for output stride 8 (use (6, 12, 18) at OS 16).

    Shapes: ``(B, C_in, h, w)`` -> features ``(B, channels, h, w)`` -> logits ``(B, K, h, w)``.
    """

    def __init__(self, in_channels: int, num_classes: int, channels: int = 256,
                 rates: Sequence[int] = (12, 24, 36), dropout: float = 0.1,
                 norm_layer: NormLayer = nn.BatchNorm2d):
        super().__init__()
        self.rates = tuple(rates)
        self.branches = nn.ModuleList(
            [conv_bn_relu(in_channels, channels, 1, norm_layer=norm_layer)]
            + [conv_bn_relu(in_channels, channels, 3, r, norm_layer) for r in self.rates])
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), conv_bn_relu(in_channels, channels, 1, norm_layer=norm_layer))
        n = len(self.branches) + 1
        self.project = nn.Sequential(conv_bn_relu(n * channels, channels, 1, norm_layer=norm_layer),
                                     nn.Dropout(0.5))
        self.bottleneck = conv_bn_relu(channels, channels, 3, norm_layer=norm_layer)
        self.channels = channels
        self.classifier = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(channels, num_classes, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        outs.append(F.interpolate(self.image_pool(x), size=x.shape[-2:], mode="bilinear",
                                  align_corners=False))
        return self.bottleneck(self.project(torch.cat(outs, dim=1)))


class FCNHead(_Head):
    """Auxiliary FCN head (3x3 conv to ``channels`` + dropout + 1x1 classifier), on ``layer3``.

    Shapes: ``(B, C_in, h, w)`` -> logits ``(B, K, h, w)``.
    """

    def __init__(self, in_channels: int, num_classes: int, channels: int | None = None,
                 dropout: float = 0.1, norm_layer: NormLayer = nn.BatchNorm2d):
        super().__init__()
        channels = channels or max(in_channels // 2, 16)
        self.conv = conv_bn_relu(in_channels, channels, 3, norm_layer=norm_layer)
        self.channels = channels
        self.classifier = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(channels, num_classes, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)

"""Dilated MobileNetV2 backbone in torchvision's parameter-key layout (``features.N...``).

The inverted-residual blocks ``features.0`` ... ``features.17`` are grouped into four stages:
``layer1`` = features[0:4] (24 channels, stride 4), ``layer2`` = [4:7] (32, stride 8),
``layer3`` = [7:14] (96, stride 16), ``layer4`` = [14:18] (320, stride 32). At output stride 8
the strides of ``features.7`` and ``features.14`` become 1 and the depthwise convs of ``layer3``
/ ``layer4`` are dilated by 2 / 4 (OS 16: ``layer4`` only, by 2). The final 1x1 conv to 1280
channels (``features.18``) and the classifier are dropped, as in segmentation distillation work;
their keys in a torchvision checkpoint are ignored when loading.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .resnet import scale_channels

NormLayer = Callable[[int], nn.Module]

# t (expansion), c (channels), n (repeats), s (stride): torchvision's inverted_residual_setting.
_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1))
_STAGES = {"layer1": (0, 4), "layer2": (4, 7), "layer3": (7, 14), "layer4": (14, 18)}


class ConvBNReLU(nn.Sequential):
    """conv - norm - ReLU6 (keys ``0.weight``, ``1.*``)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1,
                 groups: int = 1, norm_layer: NormLayer = nn.BatchNorm2d):
        pad = (kernel - 1) // 2 * dilation
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, pad, dilation=dilation,
                                   groups=groups, bias=False),
                         norm_layer(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """Expand (1x1) - depthwise (3x3, dilated) - project (1x1, linear) with a residual."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int, dilation: int = 1,
                 norm_layer: NormLayer = nn.BatchNorm2d):
        super().__init__()
        hidden = cin * expand_ratio
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(cin, hidden, 1, norm_layer=norm_layer))
        layers += [ConvBNReLU(hidden, hidden, 3, stride, dilation, groups=hidden,
                              norm_layer=norm_layer),
                   nn.Conv2d(hidden, cout, 1, bias=False), norm_layer(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """Dilated MobileNetV2 returning ``{'layer1': ..., 'layer4': ...}``.

    Args:
        output_stride: 8 (default), 16 or 32.
        norm_layer: normalisation constructor ``norm_layer(channels)``.
        width: channel multiplier (1.0: the standard network; channels rounded to multiples
            of 8 by :func:`~sstkd.models.resnet.scale_channels`).

    Shapes:
        input ``(B, 3, H, W)``; ``layer1`` ``(B, 24, H/4, W/4)``, ``layer2`` ``(B, 32, H/8, W/8)``,
        ``layer3`` ``(B, 96, ...)``, ``layer4`` ``(B, 320, H/OS, W/OS)`` (ceil division).

    Example:
        >>> net = MobileNetV2()
        >>> tuple(net(torch.zeros(1, 3, 64, 64))["layer4"].shape)
        (1, 320, 8, 8)
    """

    stage_names = ("layer1", "layer2", "layer3", "layer4")
    ignored_pretrained_prefixes = ("classifier.", "features.18.")

    def __init__(self, output_stride: int = 8, norm_layer: NormLayer = nn.BatchNorm2d,
                 width: float = 1.0):
        super().__init__()
        if not (isinstance(width, (int, float)) and 0 < width <= 4):
            raise ValueError(f"MobileNetV2: width must be a number in (0, 4], got {width!r}")
        self.width = float(width)
        if output_stride not in (8, 16, 32):
            raise ValueError("MobileNetV2: output_stride must be 8, 16 or 32, "
                             f"got {output_stride!r}")
        self.output_stride = output_stride
        cin = scale_channels(32, width)
        feats: list[nn.Module] = [ConvBNReLU(3, cin, 3, 2, norm_layer=norm_layer)]
        stride_now, dilation = 2, 1
        for t, c, n, s in _SETTING:
            c = scale_channels(c, width)
            for i in range(n):
                stride = s if i == 0 else 1
                if stride == 2 and stride_now >= output_stride:
                    stride, dilation = 1, dilation * 2
                    first_dilation = dilation // 2 if i == 0 else dilation
                else:
                    first_dilation = dilation
                    stride_now *= stride
                feats.append(InvertedResidual(cin, c, stride, t, first_dilation, norm_layer))
                cin = c
        self.features = nn.Sequential(*feats)
        self.channels = {name: scale_channels(c, width) for name, c in
                         (("layer1", 24), ("layer2", 32), ("layer3", 96), ("layer4", 320))}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, 3, H, W)`` -> dict of the four stage outputs (see class docstring)."""
        out = {}
        for name, (a, b) in _STAGES.items():
            for i in range(a, b):
                x = self.features[i](x)
            out[name] = x
        return out

"""Dilated ResNet-18/34/50/101 backbones in torchvision's parameter-key layout.

The backbone returns the four stage outputs ``layer1`` ... ``layer4``. Output stride 8 (the
default in segmentation distillation work) replaces the strides of ``layer3`` and ``layer4``
by dilation 2 and 4; output stride 16 dilates ``layer4`` only (dilation 2); 32 is the plain
classification network. Parameter names follow torchvision (``conv1``, ``bn1``,
``layer1.0.conv1`` ...) so that an ImageNet checkpoint in that layout loads with strict key
checking (see :func:`sstkd.models.checkpoint.load_pretrained_backbone`). The optional deep stem
(three 3x3 convs, 64-64-128 channels, as in PSPNet / SKD / CIRKD checkpoints) adds ``conv2``,
``bn2``, ``conv3``, ``bn3`` and widens the stem output to 128 channels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

NormLayer = Callable[[int], nn.Module]


def scale_channels(channels: int, width: float) -> int:
    """``channels * width`` rounded to a multiple of 8 (at least 8); ``width == 1`` is exact.

    The MobileNet rounding: a width-reduced network keeps channel counts that vectorise well.
    """
    if width == 1.0:
        return channels
    return max(8, int(channels * width + 4) // 8 * 8)

# (block type, blocks per stage)
RESNET_SPECS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation,
                     groups=groups, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, norm_layer: NormLayer = nn.BatchNorm2d):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 - 3x3 - 1x1 bottleneck with stride on the 3x3 conv (ResNet v1.5, ResNet-50/101)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, norm_layer: NormLayer = nn.BatchNorm2d):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = norm_layer(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = norm_layer(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = norm_layer(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _stage_dilations(output_stride: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(stride, dilation) of layer3 and layer4 for an output stride."""
    if output_stride == 8:
        return (1, 2), (1, 4)
    if output_stride == 16:
        return (2, 1), (1, 2)
    if output_stride == 32:
        return (2, 1), (2, 1)
    raise ValueError(f"ResNet: output_stride must be 8, 16 or 32, got {output_stride!r}")


class ResNet(nn.Module):
    """Dilated ResNet backbone returning ``{'layer1': ..., 'layer4': ...}``.

    Args:
        depth: 18, 34, 50 or 101.
        output_stride: 8 (default), 16 or 32.
        deep_stem: three 3x3 convs instead of the 7x7 stem (not loadable from torchvision
            checkpoints).
        multi_grid: optional per-block dilation multipliers for ``layer4`` (e.g. ``(1, 2, 4)``).
        norm_layer: normalisation constructor ``norm_layer(channels)``; swap for SyncBatchNorm.
        width: channel multiplier (1.0: the standard network; 0.5 halves every stage's width,
            rounded by :func:`scale_channels`); only width 1 loads torchvision checkpoints.

    Shapes:
        input ``(B, 3, H, W)``; ``layer1`` ``(B, C1, ceil(H/4), ceil(W/4))`` with ``C1`` = 64
        (18/34) or 256 (50/101), times ``width``; ``layer2`` stride 8; ``layer3``/``layer4`` stride
        ``min(16, output_stride)`` / ``output_stride``; channels ``C1 * (1, 2, 4, 8)``.

    Example:
        >>> net = ResNet(18)
        >>> {k: tuple(v.shape) for k, v in net(torch.zeros(1, 3, 64, 64)).items()}["layer4"]
        (1, 512, 8, 8)
    """

    stage_names = ("layer1", "layer2", "layer3", "layer4")
    # torchvision keys that a segmentation backbone has no use for.
    ignored_pretrained_prefixes = ("fc.",)

    def __init__(self, depth: int = 50, output_stride: int = 8, deep_stem: bool = False,
                 multi_grid: Sequence[int] | None = None, norm_layer: NormLayer = nn.BatchNorm2d,
                 width: float = 1.0):
        super().__init__()
        if not (isinstance(width, (int, float)) and 0 < width <= 4):
            raise ValueError(f"ResNet: width must be a number in (0, 4], got {width!r}")
        if depth not in RESNET_SPECS:
            raise ValueError(f"ResNet: depth must be one of {sorted(RESNET_SPECS)}, got {depth!r}")
        kind, layers = RESNET_SPECS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        (s3, d3), (s4, d4) = _stage_dilations(output_stride)
        if multi_grid is not None and len(multi_grid) != layers[3]:
            raise ValueError(f"ResNet: multi_grid needs {layers[3]} entries for layer4 of "
                             f"ResNet-{depth}, got {tuple(multi_grid)!r}")
        self.depth, self.output_stride, self.deep_stem = depth, output_stride, deep_stem
        self.width = float(width)
        self._norm = norm_layer
        c64, c128 = scale_channels(64, width), scale_channels(128, width)
        if deep_stem:
            self.conv1 = _conv3x3(3, c64, stride=2)
            self.bn1 = norm_layer(c64)
            self.conv2 = _conv3x3(c64, c64)
            self.bn2 = norm_layer(c64)
            self.conv3 = _conv3x3(c64, c128)
            self.bn3 = norm_layer(c128)
            self.inplanes = c128
        else:
            self.conv1 = nn.Conv2d(3, c64, 7, stride=2, padding=3, bias=False)
            self.bn1 = norm_layer(c64)
            self.inplanes = c64
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        planes = [scale_channels(c, width) for c in (64, 128, 256, 512)]
        self.layer1 = self._make_layer(block, planes[0], layers[0], 1, 1)
        self.layer2 = self._make_layer(block, planes[1], layers[1], 2, 1)
        self.layer3 = self._make_layer(block, planes[2], layers[2], s3, d3)
        self.layer4 = self._make_layer(block, planes[3], layers[3], s4, d4, multi_grid)
        self.channels = {n: c * block.expansion for n, c in zip(self.stage_names, planes)}
        self._init_weights()

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int, dilation: int,
                    multi_grid: Sequence[int] | None = None) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                self._norm(planes * block.expansion))
        grid = multi_grid or [1] * blocks
        # First block keeps half the dilation (as torchvision / PSPNet do) unless multi-grid.
        first = dilation * grid[0] if multi_grid else max(1, dilation // 2)
        mods = [block(self.inplanes, planes, stride, first, downsample, self._norm)]
        self.inplanes = planes * block.expansion
        for i in range(1, blocks):
            mods.append(block(self.inplanes, planes, 1, dilation * grid[i], None, self._norm))
        return nn.Sequential(*mods)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, 3, H, W)`` -> dict of the four stage outputs (see class docstring)."""
        x = self.relu(self.bn1(self.conv1(x)))
        if self.deep_stem:
            x = self.relu(self.bn2(self.conv2(x)))
            x = self.relu(self.bn3(self.conv3(x)))
        x = self.maxpool(x)
        out = {}
        for name in self.stage_names:
            x = getattr(self, name)(x)
            out[name] = x
        return out

"""Backbone + head + auxiliary head in one module with a single, tap-friendly forward."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .heads import FCNHead


class SegmentationOutput(NamedTuple):
    """What :meth:`SegmentationModel.forward` returns with ``return_features=True``.

    Attributes:
        out: logits upsampled to the input size, ``(B, K, H, W)``.
        aux: auxiliary (layer3 FCN head) logits at input size ``(B, K, H, W)`` in training mode
            when the model has an auxiliary head; ``None`` otherwise.
        features: ``layer1`` ... ``layer4`` (backbone stages), ``head`` (head feature before the
            classifier, stride = output stride) and ``logits`` (the head's logits before
            upsampling, ``(B, K, H/OS, W/OS)``).
    """

    out: torch.Tensor
    aux: torch.Tensor | None
    features: dict[str, torch.Tensor]


class SegmentationModel(nn.Module):
    """A segmentation network: backbone -> head (-> upsample), plus an auxiliary FCN head.

    Args:
        backbone: returns a dict ``{'layer1': ..., 'layer4': ...}`` and has ``channels`` (a dict
            of the stages' channel counts).
        head: a head with ``features(x)``, ``classifier`` and ``channels`` (see
            :mod:`sstkd.models.heads`), applied to ``layer4``.
        num_classes: number of output classes ``K``.
        aux: add the auxiliary FCN head on ``layer3`` (used in training only).
        name: registry name, stored in checkpoints.

    Forward:
        ``model(x)`` with ``x`` ``(B, 3, H, W)`` returns logits ``(B, K, H, W)`` (bilinear
        upsampling, ``align_corners=False``). ``model(x, return_features=True)`` returns a
        :class:`SegmentationOutput` with ``out``, ``aux`` (training mode only) and ``features``.
        Training code that uses the auxiliary loss must ask for ``return_features=True``.

    Example:
        >>> from sstkd.models import build_model
        >>> m = build_model("pspnet_resnet18", num_classes=11).eval()
        >>> m(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 11, 64, 64])
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, num_classes: int, aux: bool = True,
                 norm_layer=nn.BatchNorm2d, name: str = ""):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.num_classes = num_classes
        self.name = name
        self.aux_head = (FCNHead(backbone.channels["layer3"], num_classes, norm_layer=norm_layer)
                         if aux else None)
        self.feature_channels = dict(backbone.channels, head=head.channels, logits=num_classes)

    @property
    def output_stride(self) -> int:
        return self.backbone.output_stride

    def forward(self, x: torch.Tensor, return_features: bool = False
                ) -> torch.Tensor | SegmentationOutput:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{type(self).__name__}.forward: expected x of shape (B, 3, H, W), "
                             f"got {tuple(x.shape)}")
        size = x.shape[-2:]
        feats = self.backbone(x)
        head_feat = self.head.features(feats["layer4"])
        logits = self.head.classifier(head_feat)
        out = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        if not return_features:
            return out
        aux = None
        if self.training and self.aux_head is not None:
            aux = F.interpolate(self.aux_head(feats["layer3"]), size=size, mode="bilinear",
                                align_corners=False)
        feats = dict(feats, head=head_feat, logits=logits)
        return SegmentationOutput(out, aux, feats)

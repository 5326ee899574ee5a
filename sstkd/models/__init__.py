"""Segmentation models: dilated backbones, PSPNet / DeepLabV3 heads, registry, checkpoints."""

from .checkpoint import (
    CheckpointMismatchError,
    load_checkpoint,
    load_pretrained_backbone,
    save_checkpoint,
)
from .flops import count_macs, count_parameters
from .heads import ASPPHead, FCNHead, PSPHead
from .mobilenetv2 import MobileNetV2
from .registry import (
    MODEL_NAMES,
    build_backbone,
    build_model,
    complexity_table,
    list_models,
    model_complexity,
    model_name,
    parse_model_name,
)
from .resnet import ResNet
from .segmentor import SegmentationModel, SegmentationOutput

__all__ = [
    "ASPPHead", "CheckpointMismatchError", "FCNHead", "MODEL_NAMES", "MobileNetV2", "PSPHead",
    "ResNet", "SegmentationModel", "SegmentationOutput", "build_backbone", "build_model",
    "complexity_table", "count_macs", "count_parameters", "list_models", "load_checkpoint",
    "load_pretrained_backbone", "model_complexity", "model_name", "parse_model_name",
    "save_checkpoint",
]

"""Losses: segmentation cross-entropy and the distillation losses SSTKD is combined with.

- :func:`segmentation_loss` -- cross-entropy (ignore 255) + 0.4 x auxiliary head, optional OHEM.
- :func:`pixelwise_kd_loss` -- pixel-wise KD (SKD / IFVD), temperature ``tau``.
- :func:`pairwise_affinity_loss` -- SKD pair-wise patch-affinity loss.
- :class:`HolisticAdversary` -- SKD / IFVD holistic loss: WGAN-GP critic + its optimizer.
- :func:`channelwise_kd_loss` -- channel-wise distillation (CWD), a peer baseline.
- :func:`structural_loss` / :func:`statistical_loss` -- SSTKD's texture losses on the outputs
  of the CDM / DTIEM modules (:mod:`sstkd.distill.texture`).

Each function has a module form (``PixelwiseKDLoss`` ...). Student tensors whose spatial size
differs from the teacher's are resized bilinearly to the teacher's size.
"""

from .adversarial import Discriminator, HolisticAdversary, gradient_penalty
from .affinity import PairwiseAffinityLoss, cosine_affinity, pairwise_affinity_loss, pooled_patches
from .channelwise import ChannelwiseKDLoss, channelwise_kd_loss
from .pixelwise import PixelwiseKDLoss, pixelwise_kd_loss
from .segmentation import SegmentationLoss, ohem_cross_entropy, segmentation_loss
from .texture import STRUCTURAL_NORMS, standardize_planes, statistical_loss, structural_loss

__all__ = [
    "STRUCTURAL_NORMS",
    "ChannelwiseKDLoss",
    "Discriminator",
    "HolisticAdversary",
    "PairwiseAffinityLoss",
    "PixelwiseKDLoss",
    "SegmentationLoss",
    "channelwise_kd_loss",
    "cosine_affinity",
    "gradient_penalty",
    "ohem_cross_entropy",
    "pairwise_affinity_loss",
    "pixelwise_kd_loss",
    "pooled_patches",
    "segmentation_loss",
    "standardize_planes",
    "statistical_loss",
    "structural_loss",
]

"""Parameter and multiply-add counts of a model, measured by one hooked forward pass."""

from __future__ import annotations

import torch
from torch import nn


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_size: tuple[int, int] = (512, 512),
               device: str | torch.device = "meta") -> int:
    """Multiply-accumulates of Conv2d and Linear layers for one ``(1, 3, H, W)`` input.

    The model is run once in eval mode (so the auxiliary head is not counted) on ``device``;
    the default ``"meta"`` device needs no memory or compute, so a model built on the meta
    device (``with torch.device("meta"): model = build_model(...)``) is counted for free.
    Normalisation, activations, pooling and interpolation are not counted (the usual
    convention of segmentation papers, which call this number "FLOPs").

    Returns:
        total multiply-adds (divide by 1e9 for the usual GFLOPs figure).
    """
    if len(input_size) != 2:
        raise ValueError(f"count_macs: input_size must be (H, W), got {input_size!r}")
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += out.numel() // out.shape[0] * k

    def linear_hook(m: nn.Linear, _inp, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() // out.shape[0] * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *input_size, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total

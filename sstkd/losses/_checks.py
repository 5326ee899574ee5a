"""Input checks shared by the distillation losses (messages name the function and argument)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def check_4d(fn: str, name: str, x: object) -> torch.Tensor:
    """Raise unless ``x`` is a floating-point ``(B, C, H, W)`` tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{fn}: {name} must have shape (B, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{fn}: {name} must be floating point, got {x.dtype}")
    return x


def check_pair(fn: str, student: object, teacher: object, same_channels: bool = True,
               resize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a student/teacher pair; bilinearly resize the student to the teacher's size.

    Args:
        fn: calling function's name, for messages.
        student: ``(B, C_s, h, w)``.
        teacher: ``(B, C_t, H, W)``.
        same_channels: require ``C_s == C_t``.
        resize: resize ``student`` to ``(H, W)`` (bilinear, ``align_corners=False``) when the
            spatial sizes differ; otherwise a spatial mismatch is an error.

    Returns:
        ``(student, teacher)`` with equal batch and spatial sizes.
    """
    s = check_4d(fn, "student", student)
    t = check_4d(fn, "teacher", teacher)
    if s.shape[0] != t.shape[0]:
        raise ValueError(f"{fn}: student and teacher batch sizes differ: student "
                         f"{tuple(s.shape)}, teacher {tuple(t.shape)}")
    if same_channels and s.shape[1] != t.shape[1]:
        raise ValueError(f"{fn}: student and teacher channel counts differ: student "
                         f"{tuple(s.shape)}, teacher {tuple(t.shape)}")
    if s.shape[-2:] != t.shape[-2:]:
        if not resize:
            raise ValueError(f"{fn}: student and teacher spatial sizes differ: student "
                             f"{tuple(s.shape)}, teacher {tuple(t.shape)}")
        s = F.interpolate(s, size=t.shape[-2:], mode="bilinear", align_corners=False)
    return s, t


def check_positive(fn: str, name: str, value: float) -> float:
    """Raise unless ``value`` is a positive real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{fn}: {name} must be a positive number, got {value!r}")
    return float(value)

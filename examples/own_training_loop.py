"""SSTKD's texture losses in your own PyTorch training loop: no change to the models or loop.

Any teacher and student ``nn.Module`` work; name the modules whose outputs carry the texture
knowledge (``taps``; here both nets call it ``layer1``, a mapping pairs different names).
``SSTKDLoss`` taps them with forward hooks and owns the adapters (student -> teacher channels),
so its ``parameters()`` go to the optimizer with the student's. Runs on a CPU in seconds::

    python examples/own_training_loop.py
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from sstkd import SSTKDLoss
from sstkd.data import build_dataset


def tiny_segmenter(width: int, classes: int = 4) -> nn.Module:
    """A two-stage conv net ``(B, 3, H, W) -> (B, classes, H, W)``; ``layer1`` is stride 4."""
    return nn.Sequential(OrderedDict(
        stem=nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU()),
        layer1=nn.Sequential(nn.Conv2d(width, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU()),
        head=nn.Conv2d(width, classes, 1),
        up=nn.Upsample(scale_factor=4, mode="bilinear")))


def train(teacher: nn.Module, student: nn.Module, batches: Iterable, steps: int,
          lr: float = 0.02) -> list[dict[str, float]]:
    """Distil ``teacher`` into ``student`` for ``steps`` batches; the loss terms of each step."""
    first_images, _ = next(iter(batches))
    kd = SSTKDLoss(student, teacher, taps=["layer1"], structural=3.0, statistical=10.0,
                   pixelwise=3.0, nlevs=(2, 2), num_levels=16, example_input=first_images)
    optimizer = torch.optim.SGD([*student.parameters(), *kd.parameters()], lr=lr, momentum=0.9)
    teacher.eval()
    history = []
    with kd:  # the hooks are removed on exit
        for _, (images, labels) in zip(range(steps), batches):
            with torch.no_grad():
                teacher_logits = teacher(images)
            student_logits = student(images)
            terms = kd(student_logits, teacher_logits)  # {'str', 'sta', 'pi', 'total'}
            loss = F.cross_entropy(student_logits, labels, ignore_index=255) + terms["total"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            history.append({k: v.item() for k, v in terms.items()})
    return history


def main(steps: int = 20) -> list[dict[str, float]]:
    torch.manual_seed(0)
    data = build_dataset("synthetic", split="train", length=256, size=64, num_classes=4)
    teacher, student = tiny_segmenter(32), tiny_segmenter(8)  # load your trained teacher here
    history = train(teacher, student, DataLoader(data, batch_size=4, shuffle=True), steps)
    for step, terms in enumerate(history, 1):
        print(f"step {step:3d}  " + "  ".join(f"{k} {v:.4f}" for k, v in terms.items()))
    return history


if __name__ == "__main__":
    main()

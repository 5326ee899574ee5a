"""Confusion-matrix segmentation metrics: mIoU, per-class IoU, pixel and mean accuracy."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist


class ConfusionMatrix:
    """Accumulates a ``(K, K)`` confusion matrix (rows: ground truth, columns: prediction).

    Pixels whose target equals ``ignore_index`` are skipped. A class that never occurs in the
    ground truth and is never predicted has IoU / accuracy ``nan`` and is left out of the means;
    a class predicted but absent from the ground truth has IoU 0 and counts.

    Args:
        num_classes: ``K``.
        ignore_index: target value to skip (default 255).
        device: where the matrix lives (put it on the GPU for GPU inference / NCCL reduction).

    Example:
        >>> cm = ConfusionMatrix(2)
        >>> cm.update(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]))
        >>> cm.compute()["miou"]
        0.5
    """

    def __init__(self, num_classes: int, ignore_index: int = 255,
                 device: str | torch.device = "cpu"):
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError("ConfusionMatrix: num_classes must be a positive int, "
                             f"got {num_classes!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        self.mat.zero_()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch.

        Args:
            pred: int class map ``(...)`` (e.g. ``(B, H, W)``), or scores ``(B, K, H, W)`` whose
                argmax over dim 1 is taken.
            target: int labels with the shape of the class map; values in ``[0, K)`` or
                ``ignore_index``.
        """
        if pred.is_floating_point():
            if pred.dim() != target.dim() + 1 or pred.shape[1] != self.num_classes:
                raise ValueError(f"ConfusionMatrix.update: float scores must be (B, "
                                 f"{self.num_classes}, H, W) for target {tuple(target.shape)}, "
                                 f"got {tuple(pred.shape)}")
            pred = pred.argmax(1)
        if pred.shape != target.shape:
            raise ValueError(f"ConfusionMatrix.update: pred shape {tuple(pred.shape)} != target "
                             f"shape {tuple(target.shape)}")
        if target.is_floating_point():
            raise TypeError(f"ConfusionMatrix.update: target must be an integer tensor, "
                            f"got {target.dtype}")
        pred = pred.reshape(-1).to(self.mat.device, torch.int64)
        target = target.reshape(-1).to(self.mat.device, torch.int64)
        keep = target != self.ignore_index
        pred, target = pred[keep], target[keep]
        k = self.num_classes
        for name, t in (("target", target), ("pred", pred)):
            if t.numel() and (t.min() < 0 or t.max() >= k):
                bad = t[(t < 0) | (t >= k)][0].item()
                raise ValueError(f"ConfusionMatrix.update: {name} holds value {bad}; expected "
                                 f"0..{k - 1}" + (f" or {self.ignore_index}" if name == "target"
                                                  else ""))
        self.mat += torch.bincount(target * k + pred, minlength=k * k).reshape(k, k)

    def all_reduce(self) -> None:
        """Sum the matrix over processes when ``torch.distributed`` is initialised (else no-op)."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.mat, op=dist.ReduceOp.SUM)

    def compute(self) -> dict:
        """Metrics of what has been accumulated.

        Returns:
            ``{'miou', 'pixel_acc', 'mean_acc', 'iou' (list of K, nan for absent classes),
            'acc' (per-class recall, list of K), 'pixels' (counted pixels)}``; the means are
            over the non-``nan`` entries (``nan`` when there are none).
        """
        m = self.mat.double().cpu()
        tp = m.diag()
        gt = m.sum(1)
        union = gt + m.sum(0) - tp
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
        acc = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, float("nan")))
        total = m.sum()
        pixel_acc = (tp.sum() / total).item() if total else float("nan")
        return {"miou": _nanmean(iou), "pixel_acc": pixel_acc,
                "mean_acc": _nanmean(acc), "iou": iou.tolist(), "acc": acc.tolist(),
                "pixels": int(total.item())}


SegMetrics = ConfusionMatrix


def _nanmean(x: torch.Tensor) -> float:
    valid = ~torch.isnan(x)
    return x[valid].mean().item() if valid.any() else float("nan")


def format_table(result: dict, class_names: Sequence[str]) -> str:
    """A per-class Markdown table (IoU, accuracy in %) followed by the summary metrics."""
    lines = ["| class | IoU | Acc |", "| --- | ---: | ---: |"]
    for name, iou, acc in zip(class_names, result["iou"], result["acc"]):
        lines.append(f"| {name} | {_pct(iou)} | {_pct(acc)} |")
    lines.append(f"\nmIoU {_pct(result['miou'])}  pixel acc {_pct(result['pixel_acc'])}  "
                 f"mean acc {_pct(result['mean_acc'])}")
    return "\n".join(lines)


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.2f}"

"""Evaluate a segmentation model: metrics, per-class table, JSON results, blended PNGs.

Command line::

    python -m sstkd.evaluate --model pspnet_resnet18 --checkpoint runs/x/final.pth \\
        --dataset camvid --data-root ../shared/datasets/camvid --split val [--mode slide]
        [--scales 0.75 1.0 1.25 --flip] [--num-vis 4] [--out-dir eval_out]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from .data import build_dataset
from .inference import predict, predict_multiscale
from .metrics import ConfusionMatrix, format_table
from .models import list_models, load_checkpoint
from .visualize_pred import denormalize, make_palette, save_blend


@torch.no_grad()
def evaluate(model: nn.Module, dataset, mode: str = "whole",
             scales: Sequence[float] | None = None, flip: bool = False,
             crop_size: int | Sequence[int] = 512, stride: int | Sequence[int] = 341,
             device: str | torch.device = "cpu", num_vis: int = 0,
             out_dir: str | Path | None = None, limit: int | None = None, num_workers: int = 0,
             progress: bool = True) -> dict:
    """Run ``model`` over ``dataset`` (batch size 1, full resolution) and compute metrics.

    Args:
        model: maps ``(1, 3, H, W)`` to logits ``(1, K, H, W)``; put in eval mode here.
        dataset: yields ``(image (3, H, W), label (H, W))`` and has ``num_classes``,
            ``ignore_index``, optionally ``class_names``, ``palette``, ``sample_name(i)``.
        mode: ``"whole"`` or ``"slide"`` (``crop_size`` / ``stride``).
        scales, flip: multi-scale (+ horizontal flip) averaging when ``scales`` is given or
            ``flip`` is set.
        num_vis: how many predictions to save as blended PNGs under ``out_dir/vis``.
        out_dir: where ``results.json``, ``table.md`` and ``vis/`` go (nothing written if None).
        limit: evaluate only the first ``limit`` samples.

    Returns:
        the :meth:`ConfusionMatrix.compute` dict plus ``class_names``, ``mode`` and ``samples``.
    """
    k = dataset.num_classes
    model = model.to(device).eval()
    cm = ConfusionMatrix(k, dataset.ignore_index, device=device)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    indices = list(range(n))
    loader = DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=1,
                        num_workers=num_workers)
    palette = make_palette(k, getattr(dataset, "palette", ()))
    out_dir = Path(out_dir) if out_dir is not None else None
    if num_vis and out_dir is None:
        raise ValueError("evaluate: num_vis > 0 needs out_dir")
    for i, (image, label) in enumerate(tqdm(loader, desc="evaluate", disable=not progress)):
        image, label = image.to(device), label.to(device)
        if scales or flip:
            scores = predict_multiscale(model, image, k, scales or (1.0,), flip, mode,
                                        crop_size, stride)
        else:
            scores = predict(model, image, k, mode, crop_size, stride)
        pred = scores.argmax(1)
        cm.update(pred, label)
        if i < num_vis:
            name = dataset.sample_name(i) if hasattr(dataset, "sample_name") else f"{i:06d}"
            save_blend(out_dir / "vis" / f"{name}.png", denormalize(image[0]), pred[0],
                       palette, target=label[0], ignore_index=dataset.ignore_index)
    cm.all_reduce()
    names = list(getattr(dataset, "class_names", ())) or [str(c) for c in range(k)]
    result = dict(cm.compute(), class_names=names, mode=mode, samples=n,
                  scales=list(scales) if scales else None, flip=flip)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(json.dumps(_json_safe(result), indent=2))
        (out_dir / "table.md").write_text(format_table(result, names) + "\n")
    return result


def _json_safe(obj):
    """nan -> None so the file is strict JSON."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sstkd.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, choices=list_models())
    p.add_argument("--checkpoint", required=True, help="checkpoint file (ours or a state dict)")
    p.add_argument("--dataset", default="camvid",
                   choices=["cityscapes", "voc", "ade20k", "camvid", "synthetic"])
    p.add_argument("--data-root", default=None, help="dataset root (not for synthetic)")
    p.add_argument("--split", default="val")
    p.add_argument("--mode", default="whole", choices=["whole", "slide"])
    p.add_argument("--crop-size", type=int, nargs="+", default=[512], help="slide window H [W]")
    p.add_argument("--stride", type=int, nargs="+", default=[341], help="slide stride H [W]")
    p.add_argument("--scales", type=float, nargs="+", default=None, help="multi-scale factors")
    p.add_argument("--flip", action="store_true", help="add horizontally flipped predictions")
    p.add_argument("--output-stride", type=int, default=8, choices=[8, 16, 32],
                   help="for bare state dicts (our checkpoints store it)")
    p.add_argument("--num-vis", type=int, default=0, help="blended PNGs to save")
    p.add_argument("--out-dir", default="eval_out")
    p.add_argument("--limit", type=int, default=None, help="only the first N samples")
    p.add_argument("--synthetic-length", type=int, default=100)
    p.add_argument("--synthetic-size", type=int, default=256)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workers", type=int, default=2)
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    args = _parser().parse_args(argv)
    extra = ({"length": args.synthetic_length, "size": args.synthetic_size}
             if args.dataset == "synthetic" else {})
    dataset = build_dataset(args.dataset, args.data_root, args.split, **extra)
    model, _ = load_checkpoint(args.checkpoint, name=args.model,
                               num_classes=dataset.num_classes, output_stride=args.output_stride)
    if model.num_classes != dataset.num_classes:
        raise ValueError(f"evaluate: checkpoint {args.checkpoint!r} predicts {model.num_classes} "
                         f"classes but dataset {args.dataset!r} has {dataset.num_classes}")
    crop = tuple(args.crop_size) if len(args.crop_size) == 2 else args.crop_size[0]
    stride = tuple(args.stride) if len(args.stride) == 2 else args.stride[0]
    result = evaluate(model, dataset, args.mode, args.scales, args.flip, crop, stride,
                      args.device, args.num_vis, args.out_dir, args.limit, args.workers)
    print(format_table(result, result["class_names"]))
    print(f"results written to {Path(args.out_dir) / 'results.json'}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()

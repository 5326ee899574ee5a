"""Evaluate a segmentation model: metrics, per-class table, JSON results, blended PNGs.

Command line::

    python -m sstkd.evaluate --model pspnet_resnet18 --checkpoint runs/x/final_model.pth \\
        --dataset camvid --data-root ../shared/datasets/camvid --split val [--mode slide]
        [--scales 0.75 1.0 1.25 --flip] [--num-vis 4] [--out-dir eval_out] [--resize H W]
    python -m sstkd.evaluate --config C --checkpoint runs/x/final_model.pth  # as trained

User errors (missing data, wrong model or class count, unreadable checkpoint, bad flags) exit
with status 2 and one line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from .data import Compose, build_dataset, build_eval_transform
from .data.transforms import FixedResize
from .engine.run_files import write_results
from .inference import predict, predict_multiscale
from .metrics import ConfusionMatrix, format_table
from .models import list_models, load_checkpoint
from .models.registry import model_name, parse_model_name
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
        write_results(out_dir / "results.json", result)
        (out_dir / "table.md").write_text(format_table(result, names) + "\n")
    return result


def _model_arg(name: str) -> str:
    try:
        base, width = parse_model_name(name)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("build_model: ")) from None
    return model_name(base, width)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sstkd.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, type=_model_arg, metavar="NAME",
                   help=f"model name, one of {', '.join(list_models())}, optionally with a "
                        "width suffix such as '@0.5' (default: the checkpoint's, or --config's "
                        "model.student)")
    p.add_argument("--checkpoint", required=True,
                   help="weights file (final_model.pth / best_model.pth, or a state dict)")
    p.add_argument("--config", default=None,
                   help="training config: dataset, data.root, val split, data.resize and the "
                        "eval mode / crop / stride come from it (explicit flags win)")
    p.add_argument("--dataset", default=None,
                   choices=["cityscapes", "voc", "ade20k", "camvid", "synthetic"],
                   help="default: camvid (or --config's)")
    p.add_argument("--data-root", default=None, help="dataset root (not for synthetic)")
    p.add_argument("--split", default=None, help="default: val (or --config's data.val_split)")
    p.add_argument("--resize", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="resize images (bilinear) and labels (nearest) to H W first, like a "
                        "training config's data.resize")
    p.add_argument("--mode", default=None, choices=["whole", "slide"], help="default: whole")
    p.add_argument("--crop-size", type=int, nargs="+", default=None,
                   help="slide window H [W] (default 512)")
    p.add_argument("--stride", type=int, nargs="+", default=None,
                   help="slide stride H [W] (default 341)")
    p.add_argument("--scales", type=float, nargs="+", default=None, help="multi-scale factors")
    p.add_argument("--flip", action="store_true", help="add horizontally flipped predictions")
    p.add_argument("--output-stride", type=int, default=None, choices=[8, 16, 32],
                   help="for bare state dicts (our checkpoints store it; default 8)")
    p.add_argument("--num-vis", type=int, default=0, help="blended PNGs to save")
    p.add_argument("--out-dir", default="eval_out")
    p.add_argument("--limit", type=int, default=None, help="only the first N samples")
    p.add_argument("--synthetic-length", type=int, default=None, help="default 100")
    p.add_argument("--synthetic-size", type=int, default=None, help="default 256")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workers", type=int, default=2)
    return p


def _window(values: Sequence[int], flag: str) -> int | tuple[int, int]:
    if len(values) not in (1, 2) or min(values) < 1:
        raise ValueError(f"evaluate: {flag} expected 1 or 2 positive ints (H [W]), got "
                         f"{' '.join(map(str, values))}")
    return (values[0], values[1]) if len(values) == 2 else values[0]


def _settings(args: argparse.Namespace) -> argparse.Namespace:
    """Fill unset flags from ``--config`` (if given), then from the defaults; check them."""
    from .config import load_config

    fill: dict = {"dataset": "camvid", "split": "val", "mode": "whole", "crop_size": [512],
                  "stride": [341], "output_stride": 8, "synthetic_length": 100,
                  "synthetic_size": 256}
    args.num_classes, args.ignore_index = None, None
    if args.config is not None:
        cfg = load_config(args.config)
        d, e = cfg.data, cfg.eval
        fill.update(dataset=d.dataset, split=d.val_split, mode=e.mode,
                    crop_size=list(e.crop_size), stride=list(e.stride),
                    output_stride=cfg.model.output_stride, synthetic_length=d.val_length,
                    synthetic_size=d.image_size, model=cfg.model.student, data_root=d.root,
                    resize=list(d.resize) if d.resize is not None else None)
        args.num_classes, args.ignore_index = d.num_classes, d.ignore_index
    for key, value in fill.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.crop = _window(args.crop_size, "--crop-size")
    args.stride_hw = _window(args.stride, "--stride")
    if args.resize is not None and min(args.resize) < 1:
        raise ValueError(f"evaluate: --resize expected two positive ints H W, got {args.resize}")
    for flag, value, low in (("--limit", args.limit, 1), ("--num-vis", args.num_vis, 0),
                             ("--workers", args.workers, 0),
                             ("--synthetic-length", args.synthetic_length, 1),
                             ("--synthetic-size", args.synthetic_size, 1)):
        if value is not None and value < low:
            raise ValueError(f"evaluate: {flag} expected an int >= {low}, got {value}")
    if str(args.device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"evaluate: --device {args.device} but CUDA is not available; use "
                         "--device cpu")
    if Path(args.out_dir).exists() and not Path(args.out_dir).is_dir():
        raise ValueError(f"evaluate: --out-dir {args.out_dir!r} is a file, expected a folder")
    return args


def _check_weights_file(path: str) -> None:
    """A clear error for a missing, unreadable or training-state file (not weights)."""
    if not Path(path).is_file():
        raise ValueError(f"evaluate: --checkpoint {path!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"evaluate: --checkpoint {path!r} is truncated or not a checkpoint "
                         f"({reason})") from None
    if isinstance(obj, dict) and "distiller" in obj and "optimizer" in obj:
        raise ValueError(f"evaluate: --checkpoint {path!r} is a training state (latest.pt), not "
                         "model weights; evaluate final_model.pth or best_model.pth of the run")


def main(argv: Sequence[str] | None = None) -> dict:
    """Parse ``argv`` and evaluate; returns the results (as written to ``results.json``).

    Raises:
        ValueError, FileNotFoundError: bad arguments, data or checkpoint (the CLI prints them
            as one line and exits with status 2).
    """
    args = _settings(_parser().parse_args(argv))
    extra: dict = ({"length": args.synthetic_length, "size": args.synthetic_size}
                   if args.dataset == "synthetic" else {})
    if args.num_classes is not None and args.dataset == "synthetic":
        extra["num_classes"] = args.num_classes
    if args.ignore_index is not None:
        extra["ignore_index"] = args.ignore_index
    transform = (Compose([FixedResize(args.resize), build_eval_transform()])
                 if args.resize is not None else None)
    dataset = build_dataset(args.dataset, args.data_root, args.split, transform, **extra)
    _check_weights_file(args.checkpoint)
    model, _ = load_checkpoint(args.checkpoint, name=args.model,
                               num_classes=dataset.num_classes, output_stride=args.output_stride)
    if model.num_classes != dataset.num_classes:
        raise ValueError(f"evaluate: checkpoint {args.checkpoint!r} predicts {model.num_classes} "
                         f"classes but dataset {args.dataset!r} has {dataset.num_classes}")
    result = evaluate(model, dataset, args.mode, args.scales, args.flip, args.crop,
                      args.stride_hw, args.device, args.num_vis, args.out_dir, args.limit,
                      args.workers)
    print(format_table(result, result["class_names"]))
    print(f"results written to {Path(args.out_dir) / 'results.json'}", file=sys.stderr)
    return result


def _cli() -> int:
    try:
        main()
    except (ValueError, FileNotFoundError) as e:
        from .engine import one_line

        print(f"sstkd.evaluate: error: {one_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_cli())

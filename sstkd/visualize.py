"""Render the teacher's and the student's texture knowledge side by side, as PNG files.

For every image: one row per network (teacher, student) with the input, the prediction, the
equalised texture-intensity map ``Q`` (DTIEM, :func:`sstkd_ops.texture_equalize`) and the
contourlet subbands (CDM, :func:`sstkd_ops.pdfb_dec`: final low-pass, then each pyramid
level's directional subbands, coarse to fine) of the feature at ``--tap``. Each subband panel
shows the mean absolute coefficient over channels, scaled to its own range, so the teacher
(e.g. 256 channels) and the student (64 channels, no adapter) are comparable in structure,
not in scale.

Command line::

    python -m sstkd.visualize --teacher runs/x/teacher/final_model.pth \\
        --student runs/x/student_sstkd/final_model.pth --dataset synthetic --num-images 2 \\
        --out-dir vis/
    python -m sstkd.visualize --teacher T.pth --student S.pth --images a.png b.png --size 360 480
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

import sstkd_ops
from sstkd_ops import pdfb_multiple, pdfb_pad

from .data import IMAGENET_MEAN, IMAGENET_STD, build_dataset
from .models import load_checkpoint
from .visualize_pred import colorize, denormalize, make_palette


@torch.no_grad()
def texture_panels(model: nn.Module, image: torch.Tensor, tap: str = "layer1",
                   nlevs: Sequence[int] = (2, 2), num_levels: int = 16, iters: int = 3,
                   theta: float = 0.5) -> dict[str, object]:
    """Prediction, ``Q`` map and contourlet subband magnitudes of ``model`` for one image.

    Args:
        model: a segmentation model (eval mode is set here).
        image: normalised ``(3, H, W)`` or ``(1, 3, H, W)`` float tensor.
        tap: feature name (``model.feature_channels``).
        nlevs, num_levels, iters, theta: contourlet / DTIEM settings.

    Returns:
        ``{'pred': (H, W) int64, 'q': (h, w) float, 'bands': [(title, (h_k, w_k) float), ...]}``
        as numpy arrays.
    """
    model.eval()
    x = image[None] if image.dim() == 3 else image
    out = model(x, return_features=True)
    if tap not in out.features:
        raise ValueError(f"texture_panels: tap {tap!r} is not a feature of {model.name!r}; "
                         f"expected one of {sorted(out.features)}")
    feat = out.features[tap].float()
    q = sstkd_ops.texture_equalize(feat, num_levels, iters, theta).q[0]
    if feat.shape[-2] % pdfb_multiple(nlevs, "pkva") or feat.shape[-1] % pdfb_multiple(
            nlevs, "pkva"):
        feat = pdfb_pad(feat, nlevs, "pkva")[0]
    low, levels = sstkd_ops.pdfb_dec(feat, "9-7", "pkva", nlevs)
    bands = [("low-pass", low[0].abs().mean(0))]
    for i, level in enumerate(levels):
        bands += [(f"L{i} d{k}", b[0].abs().mean(0)) for k, b in enumerate(level)]
    return {"pred": out.out.argmax(1)[0].numpy(), "q": q.numpy(),
            "bands": [(t, b.numpy()) for t, b in bands]}


def render(teacher: nn.Module, student: nn.Module, image: torch.Tensor, path: str | Path,
           palette: np.ndarray | None = None, label: torch.Tensor | None = None,
           **settings) -> Path:
    """Write one PNG: teacher row and student row (see the module docstring).

    Args:
        teacher, student: segmentation models with the same number of classes.
        image: normalised ``(3, H, W)``. label: optional ``(H, W)`` ground truth (shown with
            the input). palette: ``(K, 3)`` uint8 colours.
        **settings: passed to :func:`texture_panels` (``tap``, ``nlevs``, ...).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    palette = make_palette(teacher.num_classes) if palette is None else palette
    rows = [("teacher", texture_panels(teacher, image, **settings)),
            ("student", texture_panels(student, image, **settings))]
    rgb = denormalize(image)
    ncol = 3 + len(rows[0][1]["bands"]) + (label is not None)
    fig = Figure(figsize=(1.8 * ncol, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    for r, (who, p) in enumerate(rows):
        panels = [(f"{who}: input", rgb, None)]
        if label is not None:
            panels.append(("ground truth", colorize(label, palette), None))
        panels += [("prediction", colorize(p["pred"], palette), None),
                   ("Q (equalised)", p["q"], (0.0, 1.0))]
        panels += [(t, b, None) for t, b in p["bands"]]
        for c, (title, img, vrange) in enumerate(panels):
            ax = fig.add_subplot(2, ncol, r * ncol + c + 1)
            if img.ndim == 2:
                lo, hi = vrange or (float(img.min()), float(img.max()) + 1e-12)
                ax.imshow(img, cmap="magma", vmin=lo, vmax=hi, interpolation="nearest")
            else:
                ax.imshow(img, interpolation="nearest")
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _load_image(path: str, size: Sequence[int] | None) -> torch.Tensor:
    with Image.open(path) as im:
        im = im.convert("RGB")
        if size:
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (x - mean) / std


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sstkd.visualize",
                                description=__doc__.split("\n")[0])
    p.add_argument("--teacher", required=True, help="teacher checkpoint (final_model.pth)")
    p.add_argument("--student", required=True, help="student checkpoint (final_model.pth)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", nargs="+", help="image files")
    src.add_argument("--dataset", help="dataset name (cityscapes, voc, ade20k, camvid, "
                     "synthetic)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--split", default="val")
    p.add_argument("--num-images", type=int, default=2)
    p.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="resize --images to H W")
    p.add_argument("--synthetic-size", type=int, default=64)
    p.add_argument("--tap", default="layer1")
    p.add_argument("--nlevs", type=int, nargs="+", default=[2, 2])
    p.add_argument("--num-levels", type=int, default=16)
    p.add_argument("--out-dir", default="vis")
    return p


def main(argv: Sequence[str] | None = None) -> list[Path]:
    """Render the PNGs; returns their paths."""
    args = _parser().parse_args(argv)
    teacher, _ = load_checkpoint(args.teacher)
    student, _ = load_checkpoint(args.student)
    if teacher.num_classes != student.num_classes:
        raise ValueError(f"visualize: teacher predicts {teacher.num_classes} classes, student "
                         f"{student.num_classes}")
    settings = {"tap": args.tap, "nlevs": tuple(args.nlevs), "num_levels": args.num_levels}
    out_dir = Path(args.out_dir)
    written = []
    if args.images:
        palette = make_palette(teacher.num_classes)
        for f in args.images:
            written.append(render(teacher, student, _load_image(f, args.size),
                                  out_dir / f"{Path(f).stem}_texture.png", palette, **settings))
    else:
        extra = ({"length": args.num_images, "size": args.synthetic_size,
                  "num_classes": teacher.num_classes} if args.dataset == "synthetic" else {})
        ds = build_dataset(args.dataset, args.data_root, args.split, **extra)
        palette = make_palette(ds.num_classes, getattr(ds, "palette", ()))
        for i in range(min(args.num_images, len(ds))):
            image, label = ds[i]
            written.append(render(teacher, student, image,
                                  out_dir / f"{ds.sample_name(i)}_texture.png", palette, label,
                                  **settings))
    for w in written:
        print(w)
    print(f"sstkd.visualize: wrote {len(written)} PNG files to {out_dir}", file=sys.stderr)
    return written


if __name__ == "__main__":
    main()

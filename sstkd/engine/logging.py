"""Run logs: an append-only CSV (resumable), optional TensorBoard, and a PNG of the curves."""

from __future__ import annotations

import csv
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

STEP = "step"


def _fmt(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    return f"{v:.6g}" if isinstance(v, float) else v


class CSVLogger:
    """Append rows ``{step, key: value, ...}`` to a CSV file; columns grow as new keys appear.

    Args:
        path: the CSV file.
        resume_step: ``None`` starts a new file (an old one is replaced). An int keeps the rows
            of an existing file with ``step <= resume_step`` and drops the later ones (they
            belong to the interrupted run past its last checkpoint).
        enabled: write nothing when ``False`` (non-zero ranks).

    Rows are flushed as they are written, so the file is complete up to the last call.
    """

    def __init__(self, path: str | Path, resume_step: int | None = None, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self.fields: list[str] = [STEP]
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, str]] = []
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                self.fields = list(reader.fieldnames or [STEP])
                rows = [r for r in reader if r.get(STEP) and int(float(r[STEP])) <= resume_step]
        self._rewrite(rows)

    def _rewrite(self, rows: list[Mapping[str, Any]]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)

    def log(self, step: int, values: Mapping[str, Any]) -> None:
        """Append one row (tensors are converted with ``.item()``; missing columns stay empty)."""
        if not self.enabled:
            return
        row = {STEP: int(step), **{k: _fmt(v) for k, v in values.items()}}
        new = [k for k in row if k not in self.fields]
        if new:
            with open(self.path, newline="", encoding="utf-8") as f:
                old = list(csv.DictReader(f))
            self.fields += new
            self._rewrite(old)
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, fieldnames=self.fields).writerow(row)


def read_csv(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Columns of a :class:`CSVLogger` file as ``{key: [(step, value), ...]}`` (empty skipped)."""
    out: dict[str, list[tuple[int, float]]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            step = int(float(row[STEP]))
            for k, v in row.items():
                if k == STEP or v in ("", None):
                    continue
                try:
                    out.setdefault(k, []).append((step, float(v)))
                except ValueError:
                    continue
    return out


class MetricLogger:
    """CSV always, TensorBoard when importable and asked for; writes on the main rank only.

    Args:
        output_dir: ``metrics.csv`` and ``tb/`` go here.
        resume_step: see :class:`CSVLogger`; TensorBoard events after it are purged.
        enabled: ``False`` on non-zero ranks.
        tensorboard: try ``torch.utils.tensorboard``; without the ``tensorboard`` package a
            one-line notice is printed and only the CSV is written.
    """

    def __init__(self, output_dir: str | Path, resume_step: int | None = None,
                 enabled: bool = True, tensorboard: bool = True):
        self.output_dir = Path(output_dir)
        self.csv = CSVLogger(self.output_dir / "metrics.csv", resume_step, enabled)
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                print("sstkd: tensorboard is not installed; logging to metrics.csv only "
                      "(pip install tensorboard to enable it)", file=sys.stderr)
            else:
                self.writer = SummaryWriter(str(self.output_dir / "tb"), purge_step=(
                    resume_step + 1 if resume_step is not None else None))

    @property
    def csv_path(self) -> Path:
        return self.csv.path

    def log(self, step: int, values: Mapping[str, Any]) -> None:
        """Log scalars (floats or 0-d tensors) at ``step``."""
        if not self.csv.enabled:
            return
        self.csv.log(step, values)
        if self.writer is not None:
            for k, v in values.items():
                v = v.item() if hasattr(v, "item") else v
                if isinstance(v, (int, float)):
                    self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def plot_curves(csv_path: str | Path, png_path: str | Path) -> Path:
    """Plot loss terms and mIoU against the step from a :class:`CSVLogger` file into a PNG.

    Columns whose name starts with ``loss`` go into the first panel (log scale when all are
    positive), columns containing ``miou`` into the second, a ``lr`` column into a third.

    Args:
        csv_path: the metrics CSV.
        png_path: the image to write (its directory is created).

    Returns:
        ``png_path`` as a ``Path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = read_csv(csv_path)
    losses = {k: v for k, v in cols.items() if k.lower().startswith("loss")}
    mious = {k: v for k, v in cols.items() if "miou" in k.lower()}
    lrs = {k: v for k, v in cols.items() if k.lower() == "lr"}
    panels = [("loss", losses), ("mIoU", mious)] + ([("learning rate", lrs)] if lrs else [])
    fig = Figure(figsize=(6 * len(panels), 4), dpi=100)
    FigureCanvasAgg(fig)
    for i, (title, series) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for name, pts in sorted(series.items()):
            steps, vals = zip(*pts, strict=True)
            ax.plot(steps, vals, label=name, marker="o" if len(pts) < 30 else None)
        positive = all(v > 0 and math.isfinite(v) for pts in series.values() for _, v in pts)
        if title == "loss" and series and positive:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if series:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path)
    return png_path

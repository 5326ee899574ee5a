"""``python -m sstkd_ops.demo``: decompose a synthetic texture with every available backend.

Builds a small multi-channel feature-like image (oriented gratings inside a disc on a ramp),
runs the contourlet transform on every backend this installation has, checks each against the
reference and perfect reconstruction, times them, and writes a PNG of the subbands.
Needs no data, no GPU and no network.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from . import contourlet
from ._backend import available_backends


def synthetic_texture(batch: int = 2, channels: int = 8, size: int = 128,
                      seed: int = 0) -> torch.Tensor:
    """Oriented gratings (one orientation per channel) on a ramp with a hard-edged disc.

    Returns:
        float32 tensor ``(batch, channels, size, size)``.
    """
    g = torch.Generator().manual_seed(seed)
    i = torch.arange(size, dtype=torch.float64).view(-1, 1)
    j = torch.arange(size, dtype=torch.float64).view(1, -1)
    disc = ((i - 0.45 * size) ** 2 + (j - 0.55 * size) ** 2 < (0.3 * size) ** 2).double()
    planes = []
    for _ in range(batch * channels):
        theta, freq, phase = (torch.rand(3, generator=g, dtype=torch.float64)
                              * torch.tensor([math.pi, 0.3, 2 * math.pi], dtype=torch.float64))
        grating = torch.cos(2 * math.pi * (freq + 0.05) * (i * torch.cos(theta)
                                                            + j * torch.sin(theta)) + phase)
        planes.append(i / size + 0.5 * j / size + disc + 0.5 * grating * disc)
    return torch.stack(planes).view(batch, channels, size, size).float()


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def run(size: int = 128, channels: int = 8, nlevs: tuple[int, ...] = (3, 3),
        output: Path | None = Path("outputs/demo"), reps: int = 5) -> dict:
    x = synthetic_texture(channels=channels, size=size)
    print(f"input {tuple(x.shape)} float32, nlevs={nlevs}, filters 9-7 / pkva")
    ref_low, ref_bands = contourlet.pdfb_dec(x, nlevs=nlevs, backend="reference")
    rec = contourlet.pdfb_rec(ref_low, ref_bands, backend="reference")
    print(f"perfect reconstruction (reference): max |x - rec(dec(x))| = {_max_err(rec, x):.2e}")
    results = {}
    for backend in available_backends("cpu"):
        def fwd(b=backend):
            return contourlet.pdfb_dec(x, nlevs=nlevs, backend=b)
        low, bands = fwd()
        err = max([_max_err(low, ref_low)] + [_max_err(a, b) for lv, rv in zip(bands, ref_bands)
                                              for a, b in zip(lv, rv)])
        fwd()
        t0 = time.perf_counter()
        for _ in range(reps):
            fwd()
        ms = (time.perf_counter() - t0) / reps * 1e3
        results[backend] = {"max_err_vs_reference": err, "forward_ms": ms}
        print(f"  backend {backend:9s}: forward {ms:8.2f} ms, max |diff| vs reference {err:.1e}")
    if output is not None:
        path = _plot(x[0, 0], ref_low[0, 0], [[b[0, 0] for b in lv] for lv in ref_bands], output)
        print(f"subband figure written to {path}")
    return results


def _plot(image, low, bands, output: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = max(len(lv) for lv in bands)
    fig, axes = plt.subplots(len(bands) + 1, ncols, figsize=(1.6 * ncols, 1.8 * (len(bands) + 1)))
    for ax in axes.flat:
        ax.axis("off")
    axes[0, 0].imshow(image, cmap="gray")
    axes[0, 0].set_title("input", fontsize=8)
    axes[0, 1].imshow(low, cmap="gray")
    axes[0, 1].set_title("lowpass", fontsize=8)
    for i, level in enumerate(bands):
        for k, band in enumerate(level):
            axes[i + 1, k].imshow(band.abs(), cmap="magma", aspect="auto")
            axes[i + 1, k].set_title(f"level {i} dir {k}", fontsize=7)
    fig.suptitle("contourlet subbands (|coefficient|), coarse to fine", fontsize=9)
    fig.tight_layout()
    output.mkdir(parents=True, exist_ok=True)
    path = output / "contourlet_subbands.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--nlevs", type=int, nargs="+", default=[3, 3])
    parser.add_argument("--output", type=Path, default=Path("outputs/demo"))
    args = parser.parse_args(argv)
    run(size=args.size, channels=args.channels, nlevs=tuple(args.nlevs), output=args.output)


if __name__ == "__main__":
    main()

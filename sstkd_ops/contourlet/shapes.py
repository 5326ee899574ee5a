"""The size rules of the contourlet transform, in one place: subband shapes, the sizes each op
accepts, and the band counts of a decomposition. Plain integer arithmetic (no tensors), used
by the public ops' checks, the fused implementations and the tracer alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from .filters import LADDER_FILTERS


def num_bands(nlev: int) -> int:
    """Subbands of one pyramid level: ``2**nlev`` DFB bands, or 3 wavelet bands for 0."""
    return 3 if nlev == 0 else 2 ** nlev


def dfb_levels(count: int) -> int:
    """The DFB level count ``nlev`` of ``count = 2**nlev`` subbands (``count`` checked by the
    caller)."""
    return count.bit_length() - 1


def pdfb_levels(band_counts: Sequence[int]) -> tuple[int, ...]:
    """``nlevs`` of a decomposition from its band counts per pyramid level: 3 bands are a
    wavelet level (``0``), ``2**l`` bands an ``l``-level DFB, as in the toolbox."""
    return tuple(0 if n == 3 else dfb_levels(n) for n in band_counts)


def dfb_band_shapes(height: int, width: int, nlev: int) -> list[tuple[int, int]]:
    """Subband shapes ``(h, w)`` of an ``nlev``-level DFB on an ``height x width`` image.

    ``nlev = 0``: the image itself; ``1``: two bands of ``(H/2, W)``; ``>= 2``: bands
    ``k < 2**(nlev-1)`` are ``(H/2**(nlev-1), W/2)``, the others ``(H/2, W/2**(nlev-1))``.
    """
    if nlev == 0:
        return [(height, width)]
    if nlev == 1:
        return [(height // 2, width)] * 2
    half = 2 ** (nlev - 1)
    return [(height // half, width // 2)] * half + [(height // 2, width // half)] * half


def dfb_image_shape(first_band: tuple[int, int], nlev: int) -> tuple[int, int]:
    """The image size an ``nlev``-level DFB came from, given its first subband's shape."""
    h, w = first_band
    if nlev == 0:
        return h, w
    return (2 * h, w) if nlev == 1 else (h * 2 ** (nlev - 1), 2 * w)


def dfb_multiple(nlev: int, dfilt: str = "pkva") -> int:
    """The power of two that H and W must be divisible by for ``dfb_dec(nlev=nlev)``."""
    if nlev == 2 and dfilt not in LADDER_FILTERS:
        # The general tree's second level extends its input quincunx-periodically, which is
        # only consistent with the quincunx sampling when H/2 + W/2 is even.
        return 4
    return 1 if nlev == 0 else 2 ** max(1, nlev - 1)


def pdfb_multiple(nlevs: Sequence[int], dfilt: str = "pkva") -> int:
    """The power of two that H and W must be divisible by for ``pdfb_dec(nlevs=nlevs)``.

    ``max_i 2**(J-1-i) * max(2, 2**(nlevs[i]-1))`` with ``J = len(nlevs)``, except that a
    2-level general-tree DFB (``dfilt`` not ``pkva*``) needs its image to be a multiple of 4.
    """
    levels = len(nlevs)
    return max([2 ** (levels - 1 - i) * max(2, dfb_multiple(n, dfilt))
                for i, n in enumerate(nlevs)], default=1)


def op_output_shapes(op: str, shapes: Sequence[tuple[int, int]],
                     nlevs: Sequence[int]) -> list[tuple[int, int]]:
    """Per-plane output shapes of ``op`` for per-plane input ``shapes`` (in order: ``lp_dec``:
    coarse, detail; ``dfb_dec``: the bands; ``pdfb_dec``: lowpass, then the bands of each
    level, coarse to fine)."""
    h, w = shapes[0]
    if op == "lp_dec":
        return [(h // 2, w // 2), (h, w)]
    if op == "lp_rec":
        return [shapes[1]]
    if op == "dfb_dec":
        return dfb_band_shapes(h, w, nlevs[0])
    if op == "dfb_rec":
        return [dfb_image_shape(shapes[0], nlevs[0])]
    depth = len(nlevs)
    if op == "pdfb_rec":
        return [(h * 2 ** depth, w * 2 ** depth)]
    out = [(h // 2 ** depth, w // 2 ** depth)]
    for i, n in enumerate(nlevs):
        hi, wi = h // 2 ** (depth - 1 - i), w // 2 ** (depth - 1 - i)
        out += [(hi // 2, wi // 2)] * 3 if n == 0 else dfb_band_shapes(hi, wi, n)
    return out

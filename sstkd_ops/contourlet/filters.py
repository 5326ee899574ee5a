"""Filter tables of the contourlet transform (Contourlet Toolbox v2.0 conventions).

Everything here is built from embedded numbers or closed-form definitions, in float64 with
NumPy, and then cached as tensors per ``(name, dtype, device)``; nothing is read from disk.

* :func:`pfilters` -- 1-D lowpass pair ``(h, g)`` (analysis, synthesis) of the Laplacian
  pyramid (and of the 2-D wavelet split used for a DFB level count of 0).
* :func:`dfilters` -- 2-D diamond filter pair ``(h0, h1)`` of the general tree DFB, for
  decomposition (``kind="d"``) or reconstruction (``kind="r"``).
* :func:`ldfilter` -- 1-D symmetric all-pass prototype of the ladder (``pkva*``) DFB.

Arrays keep MATLAB orientation: axis 0 = rows (image height).

Sources of the numbers: the toolbox's ``pfilters.m``, ``dfilters.m`` and ``ldfilter.m``
('9-7' decimals as printed there, '5-3', 'Burt', the Phoong-Kim-Vaidyanathan-Ansari ladder
coefficients), and the Nonsubsampled Contourlet Toolbox's ``dmaxflat.m`` / ``dfilters.m`` for
the diamond maxflat filters ``dmaxflat4..7`` (McClellan transform of a 1-D maxflat pair with
the kernel ``dmaxflat(N, 0)``). ``'maxflat'`` is that 1-D pair scaled by sqrt(2) (the
*pycontourlet* convention). One deliberate correction: the NSCT table for ``dmaxflat(6, 0)``
prints 44 at (row 7, column 2) where the symmetric entry is 444; with 444 the kernel is
symmetric and sums to exactly 1 like every other order, so 444 is used here.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._checks import check_choice

LP_FILTERS = ("9-7", "5-3", "Burt", "pkva", "maxflat")
LADDER_FILTERS = ("pkva", "pkva6", "pkva8", "pkva12")
TREE_FILTERS = ("haar", "5-3", "9-7", "cd", "dmaxflat4", "dmaxflat5", "dmaxflat6", "dmaxflat7")
DFB_FILTERS = LADDER_FILTERS + TREE_FILTERS

_SQRT2 = math.sqrt(2.0)

# Ladder all-pass prototypes: first half of the symmetric response (ldfilter.m).
_LADDER_HALF = {
    "pkva12": (0.6300, -0.1930, 0.0972, -0.0526, 0.0272, -0.0144),
    "pkva8": (0.6302, -0.1924, 0.0930, -0.0403),
    "pkva6": (0.6261, -0.1794, 0.0688),
}
_LADDER_HALF["pkva"] = _LADDER_HALF["pkva12"]

# 9-7 pair as printed in the toolbox (outer taps first; the rest is mirrored).
_H97 = (0.037828455506995, -0.023849465019380, -0.11062440441842, 0.37740285561265,
        0.85269867900940)
_G97 = (-0.064538882628938, -0.040689417609558, 0.41809227322221, 0.78848561640566)

# Upper-left quadrant of dmaxflat(N, 0) (numerators; divide by the power of two).
_DMAXFLAT = {
    4: (12, [[0, -5, 0, -3, 0],
             [-5, 0, 52, 0, 34],
             [0, 52, 0, -276, 0],
             [-3, 0, -276, 0, 1454],
             [0, 34, 0, 1454, 0]]),
    5: (17, [[0, 35, 0, 20, 0, 18],
             [35, 0, -425, 0, -250, 0],
             [0, -425, 0, 2500, 0, 1610],
             [20, 0, 2500, 0, -10200, 0],
             [0, -250, 0, -10200, 0, 47780],
             [18, 0, 1610, 0, 47780, 0]]),
    6: (20, [[0, -63, 0, -35, 0, -30, 0],
             [-63, 0, 882, 0, 495, 0, 444],
             [0, 882, 0, -5910, 0, -3420, 0],
             [-35, 0, -5910, 0, 25875, 0, 16460],
             [0, 495, 0, 25875, 0, -89730, 0],
             [-30, 0, -3420, 0, -89730, 0, 389112],
             [0, 444, 0, 16460, 0, 389112, 0]]),
    7: (24, [[0, 231, 0, 126, 0, 105, 0, 100],
             [231, 0, -3675, 0, -2009, 0, -1715, 0],
             [0, -3675, 0, 27930, 0, 15435, 0, 13804],
             [126, 0, 27930, 0, -136514, 0, -77910, 0],
             [0, -2009, 0, -136514, 0, 495145, 0, 311780],
             [105, 0, 15435, 0, 495145, 0, -1535709, 0],
             [0, -1715, 0, -77910, 0, -1535709, 0, 6305740],
             [100, 0, 13804, 0, 311780, 0, 6305740, 0]]),
}

_DIAMOND = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]) / 4.0


# ----------------------------------------------------------------------------- helpers
def _mirror(half: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """Odd symmetric filter from its outer half plus centre: [a, b, c] -> [a, b, c, b, a]."""
    half = np.asarray(half, dtype=np.float64)
    return np.concatenate([half, half[-2::-1]])


def modulate(x: np.ndarray, axes: str) -> np.ndarray:
    """Multiply by (-1)^n along rows ('r'), columns ('c') or both ('b'); origin at size//2."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    m = np.ones(x.shape)
    if axes in ("r", "b"):
        m = m * ((-1.0) ** (np.arange(x.shape[0]) - x.shape[0] // 2))[:, None]
    if axes in ("c", "b"):
        m = m * ((-1.0) ** (np.arange(x.shape[1]) - x.shape[1] // 2))[None, :]
    return x * m


def _conv2_full(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros((a.shape[0] + b.shape[0] - 1, a.shape[1] + b.shape[1] - 1))
    for i, j in zip(*np.nonzero(b)):
        out[i:i + a.shape[0], j:j + a.shape[1]] += b[i, j] * a
    return out


def mctrans(b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """McClellan transform of the odd symmetric 1-D filter ``b`` with the 2-D kernel ``t``.

    Writes ``B(w) = sum_n a_n cos(n w)`` and substitutes ``cos(n w) = T_n(T(w1, w2))``
    (Chebyshev recursion on 2-D polynomials).
    """
    b = np.asarray(b, dtype=np.float64).ravel()
    n = (b.size - 1) // 2
    a = np.concatenate([[b[n]], 2.0 * b[n + 1:]])
    r, c = (np.array(t.shape) - 1) // 2
    size = (2 * n * r + 1, 2 * n * c + 1)

    def embed(p: np.ndarray) -> np.ndarray:
        out = np.zeros(size)
        i0 = (size[0] - p.shape[0]) // 2
        j0 = (size[1] - p.shape[1]) // 2
        out[i0:i0 + p.shape[0], j0:j0 + p.shape[1]] = p
        return out

    p_prev, p_cur = np.ones((1, 1)), t
    h = a[0] * embed(p_prev) + (a[1] * embed(p_cur) if n >= 1 else 0.0)
    for k in range(2, n + 1):
        p_next = 2.0 * _conv2_full(t, p_cur)
        i0, j0 = 2 * r, 2 * c
        p_next[i0:i0 + p_prev.shape[0], j0:j0 + p_prev.shape[1]] -= p_prev
        h = h + a[k] * embed(p_next)
        p_prev, p_cur = p_cur, p_next
    return h[::-1, ::-1].copy()


def _dmaxflat_kernel(order: int) -> np.ndarray:
    shift, quad = _DMAXFLAT[order]
    q = np.array(quad, dtype=np.float64) / 2.0 ** shift
    q = np.hstack([q, q[:, -2::-1]])
    q = np.vstack([q, q[-2::-1, :]])
    q[order, order] = 0.0
    return q


def _qupz1(x: np.ndarray) -> np.ndarray:
    """Quincunx upsampling by Q1 = [[1, -1], [1, 1]] with zero fill, tight support."""
    m, n = x.shape
    out = np.zeros((m + n - 1, m + n - 1))
    i, j = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    out[i - j + n - 1, i + j] = x
    return out


# ----------------------------------------------------------------------------- numpy tables
def ldfilter_np(name: str) -> np.ndarray:
    half = np.asarray(_LADDER_HALF[name], dtype=np.float64)
    return np.concatenate([half[::-1], half])


def pfilters_np(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "9-7":
        return _mirror(_H97), _mirror(_G97)
    if name == "5-3":
        return (np.array([-1.0, 2.0, 6.0, 2.0, -1.0]) / (4.0 * _SQRT2),
                np.array([1.0, 2.0, 1.0]) / (2.0 * _SQRT2))
    if name == "Burt":
        h = np.array([0.6, 0.25, -0.05])
        g = np.array([17 / 28, 73 / 280, -3 / 56, -3 / 280])
        return _SQRT2 * np.concatenate([h[:0:-1], h]), _SQRT2 * np.concatenate([g[:0:-1], g])
    if name == "pkva":
        beta = ldfilter_np("pkva")
        n = beta.size // 2
        beta2 = np.zeros(2 * beta.size - 1)
        beta2[::2] = beta
        h = beta2.copy()
        h[2 * n - 1] += 1.0
        h = h / 2.0
        g = -np.convolve(beta2, h)
        g[4 * n - 2] += 1.0
        g[1::2] = -g[1::2]
        return h * _SQRT2, g * _SQRT2
    if name == "maxflat":
        h, g = _maxflat_prototype()
        return h * _SQRT2, g * _SQRT2
    raise KeyError(name)


def _maxflat_prototype() -> tuple[np.ndarray, np.ndarray]:
    m = 1.0 / _SQRT2
    k1 = k3 = 1.0 - _SQRT2
    k2 = m
    h = _mirror(np.array([0.25 * k2 * k3, 0.5 * k2, 1.0 + 0.5 * k2 * k3]) * m)
    g = _mirror(np.array([-0.125 * k1 * k2 * k3, 0.25 * k1 * k2,
                          -0.5 * k1 - 0.5 * k3 - 0.375 * k1 * k2 * k3,
                          1.0 + 0.5 * k1 * k2]) * m)
    return h, g


def dfilters_np(name: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
    dec = kind == "d"
    if name == "haar":
        h0 = np.array([[1.0, 1.0]]) / _SQRT2
        h1 = (np.array([[-1.0, 1.0]]) if dec else np.array([[1.0, -1.0]])) / _SQRT2
        return h0, h1
    if name in ("5-3", "9-7", "cd"):
        h, g = pfilters_np("5-3" if name == "5-3" else "9-7")
        h0, h1 = (h, modulate(g, "c")) if dec else (g, modulate(h, "c"))
        return mctrans(h0, _DIAMOND), mctrans(h1, _DIAMOND)
    if name in LADDER_FILTERS:
        beta = ldfilter_np(name)
        n = beta.size // 2
        q = _qupz1(np.outer(beta, beta))
        h0 = q.copy()
        h0[2 * n - 1, 2 * n - 1] += 1.0
        h0 = h0 / 2.0
        h1 = -_conv2_full(q, h0)
        h1[4 * n - 2, 4 * n - 2] += 1.0
        h0, h1 = _SQRT2 * h0, _SQRT2 * h1
        if not dec:
            h0, h1 = modulate(h1, "b"), modulate(h0, "b")
        return h0, h1
    if name.startswith("dmaxflat"):
        kernel = _dmaxflat_kernel(int(name[-1]))
        h, g = _maxflat_prototype()
        h0 = mctrans(h, kernel)
        g0 = mctrans(g, kernel)
        h0 = _SQRT2 * h0 / h0.sum()
        g0 = _SQRT2 * g0 / g0.sum()
        return (h0, modulate(g0, "b")) if dec else (g0, modulate(h0, "b"))
    raise KeyError(name)


# ----------------------------------------------------------------------------- tensors
_CACHE: dict[tuple, tuple[torch.Tensor, ...]] = {}


def _cached(key: tuple, build, dtype: torch.dtype, device) -> tuple[torch.Tensor, ...]:
    device = torch.device(device)
    full_key = key + (dtype, device)
    hit = _CACHE.get(full_key)
    if hit is None:
        hit = tuple(torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)
                    for a in build())
        _CACHE[full_key] = hit
    return hit


def pfilters(name: str, dtype: torch.dtype = torch.float64,
             device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """1-D Laplacian-pyramid lowpass pair ``(h, g)`` (analysis, synthesis) as 1-D tensors.

    Example:
        >>> h, g = pfilters("9-7")
        >>> tuple(h.shape), tuple(g.shape)
        ((9,), (7,))
    """
    check_choice("pfilters", "name", name, LP_FILTERS)
    return _cached(("p", name), lambda: pfilters_np(name), dtype, device)


def dfilters(name: str, kind: str = "d", dtype: torch.dtype = torch.float64,
             device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """2-D diamond filter pair ``(h0, h1)`` for decomposition (``'d'``) or reconstruction (``'r'``).

    Example:
        >>> h0, h1 = dfilters("pkva", "d")
        >>> tuple(h0.shape), tuple(h1.shape)
        ((23, 23), (45, 45))
    """
    check_choice("dfilters", "name", name, DFB_FILTERS)
    check_choice("dfilters", "kind", kind, ("d", "r"))
    return _cached(("d", name, kind), lambda: dfilters_np(name, kind), dtype, device)


def ldfilter(name: str, dtype: torch.dtype = torch.float64,
             device: torch.device | str = "cpu") -> torch.Tensor:
    """Symmetric 1-D all-pass prototype of the ladder DFB (``pkva``, ``pkva6/8/12``)."""
    check_choice("ldfilter", "name", name, LADDER_FILTERS)
    return _cached(("l", name), lambda: (ldfilter_np(name),), dtype, device)[0]

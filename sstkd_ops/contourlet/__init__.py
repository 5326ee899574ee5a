"""The contourlet transform: Laplacian pyramid, directional filter bank and their cascade.

* :mod:`.ops` -- the public ops and their argument checks;
* :mod:`.shapes` -- the size rules (subband shapes, accepted sizes, band counts);
* :mod:`.filters` -- the toolbox's filters;
* :mod:`.reference` -- the plain-PyTorch reference (oracle and fallback);
* :mod:`.tracer` -- traces the reference into linear plane programs (:mod:`sstkd_ops.linprog`);
* :mod:`.fused` -- the fused implementations (``cpu``, ``cuda``, ``triton``);
* :mod:`.autograd` -- the one custom op they run, with its exact adjoint as the backward,
  registered by :func:`.autograd.register` below.
"""

from . import autograd
from .filters import DFB_FILTERS, LP_FILTERS
from .ops import (
    dfb_band_shapes,
    dfb_dec,
    dfb_rec,
    lp_dec,
    lp_rec,
    pdfb_dec,
    pdfb_multiple,
    pdfb_pad,
    pdfb_rec,
)

__all__ = ["lp_dec", "lp_rec", "dfb_dec", "dfb_rec", "pdfb_dec", "pdfb_rec", "pdfb_pad",
           "pdfb_multiple", "dfb_band_shapes", "LP_FILTERS", "DFB_FILTERS"]

autograd.register()

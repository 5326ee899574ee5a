"""sstkd_ops: fused contourlet and texture-statistics ops with autograd.

One package per op family: :mod:`sstkd_ops.contourlet`, :mod:`sstkd_ops.texture`, and the
linear-program engine the fused contourlet backends run on, :mod:`sstkd_ops.linprog`; backend
selection in ``sstkd_ops._backend``, argument checks in ``sstkd_ops._checks``, the kernels'
constants in :mod:`sstkd_ops.constants`.

Every op takes ``backend=`` (``"auto"``, ``"reference"``, ``"cpu"``, ``"triton"``, ``"cuda"``);
the environment variable ``SSTKD_BACKEND`` overrides the default ``"auto"``.
``import sstkd_ops`` works with no GPU, no Triton and no compiled extension.
"""

from ._backend import BackendUnavailableError, available_backends, build_info
from .contourlet import (
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

__all__ = [
    "BackendUnavailableError",
    "available_backends",
    "build_info",
    "dfb_band_shapes",
    "dfb_dec",
    "dfb_rec",
    "lp_dec",
    "lp_rec",
    "pdfb_dec",
    "pdfb_multiple",
    "pdfb_pad",
    "pdfb_rec",
]

# texture statistics (QCO / DTIEM)
from .texture import (  # noqa: E402
    MAX_LEVELS,
    QCO1d,
    TextureStats,
    qco_1d,
    qco_1d_tem,
    qco_2d,
    set_finite_checks,
    texture_equalize,
    texture_importance,
)

__all__ += ["MAX_LEVELS", "QCO1d", "TextureStats", "qco_1d", "qco_1d_tem", "qco_2d",
            "set_finite_checks", "texture_equalize", "texture_importance"]

__version__ = "0.1.0"

"""Linear plane programs: the engine the fused contourlet backends run on.

A program is a fixed linear map of one image plane (gathers, scatter-adds, separable and 2-D
correlations, linear combinations), recorded once with :class:`ProgramBuilder`; its exact
transpose comes from :meth:`Program.adjoint`. This package knows nothing of contourlets:

* :mod:`.program` -- the instructions, the builder, the adjoint and the packing for kernels;
* :mod:`.interpreter` -- :func:`run_torch`, a plain-PyTorch interpreter, the kernels' oracle;
* :mod:`.runtime` -- validation, device copies and :func:`run`, which calls the kernels
  (C++ / CUDA from ``csrc/linprog/``, Triton from :mod:`.triton_kernel`).
"""

from .interpreter import run_torch
from .program import Program, ProgramBuilder, Region

__all__ = ["Program", "ProgramBuilder", "Region", "run_torch"]

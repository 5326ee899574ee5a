"""Constants shared by the references and the kernels of every backend, defined once in Python.

The compiled kernels define the same values once in ``csrc/constants.h`` (and ``sstkd_ops._C``
exposes them); ``tests/test_constants.py`` checks that both agree.
"""

#: Largest level count (``num_levels``, ``L`` of :func:`sstkd_ops.qco_1d_tem`) of every texture
#: op on every backend (``kMaxLevels``): bounds the (L, L) co-occurrence and the int32 codes.
MAX_LEVELS = 4096
#: ``F.normalize``'s eps: the cosine similarity divides by ``max(|v|, NORM_EPS)`` (``kNormEps``).
NORM_EPS = 1e-12
#: Added to the co-occurrence total by STLNet's "fix the NAN bug" commit (``kQco2dEps``).
QCO2D_EPS = 1e-6

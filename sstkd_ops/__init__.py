"""sstkd_ops: fused contourlet and texture-statistics ops with autograd.

Every op takes ``backend=`` (``"auto"``, ``"reference"``, ``"cpu"``, ``"triton"``, ``"cuda"``);
the environment variable ``SSTKD_BACKEND`` overrides the default ``"auto"``.
``import sstkd_ops`` works with no GPU, no Triton and no compiled extension.
"""

from ._backend import BackendUnavailableError, available_backends, build_info

__version__ = "0.1.0"

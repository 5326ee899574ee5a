// Python module sstkd_ops._C: loading it registers every op of the `sstkd_ops` torch
// library (schemas in csrc/*.cpp, CPU kernels in csrc/cpu/, CUDA kernels in csrc/cuda/).
#include <torch/extension.h>

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "sstkd_ops compiled kernels (ops live under torch.ops.sstkd_ops)";
#ifdef SSTKD_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}

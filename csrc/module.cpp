// Python module sstkd_ops._C: loading it registers every op of the `sstkd_ops` torch
// library. One folder per op family: csrc/linprog/ (linear plane programs, run by the fused
// contourlet backends) and csrc/texture/ (texture statistics), each with its schemas
// (<family>/*.cpp), C++ kernels (<family>/cpu/) and CUDA kernels (<family>/cuda/). C++
// namespaces follow the folders: sstkd::linprog, sstkd::texture::{math, checks, cpu, cuda}.
#include <torch/extension.h>

#include "constants.h"
#include "linprog/cpu/plane_kernels.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "sstkd_ops compiled kernels (ops live under torch.ops.sstkd_ops)";
#ifdef SSTKD_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  // The kernels' constants (csrc/constants.h), compared with sstkd_ops/constants.py by the tests.
  m.attr("MAX_LEVELS") = sstkd::kMaxLevels;
  m.attr("NORM_EPS") = sstkd::kNormEps;
  m.attr("QCO2D_EPS") = sstkd::kQco2dEps;
  m.def("cpu_isa", [] { return sstkd::linprog::cpu_isa_name(sstkd::linprog::cpu_isa()); },
        "Instruction set of the CPU linear-program kernels' next call: 'avx512', 'avx2' or "
        "'base' (the widest this CPU has, lowered by SSTKD_CPU_ISA=base|avx2)");
}

// Shared helpers of the C++ CPU texture-statistics kernels (texture_cos_sim_cpu.cpp,
// texture_qco_cpu.cpp, texture_dtiem_cpu.cpp; schemas in csrc/texture_stats.cpp): work-item
// size and argument checks. The per-value quantisation rules and the tolerances shared with the
// CUDA kernels are in csrc/texture_stats_math.h.
#pragma once
#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>

namespace sstkd_texstat {
namespace detail {

inline constexpr int64_t kChunk = 512;     // pixels per work item of the per-pixel passes

inline void check_float_cpu(const at::Tensor& t, const char* fn, const char* name,
                            int64_t ndim) {
  TORCH_CHECK(t.device().is_cpu(), fn, ": ", name, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK(t.dim() == ndim, fn, ": ", name, " must be ", ndim, "-D, got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, fn, ": ", name,
              " must be float32 or float64, got ", t.scalar_type());
}

template <typename T>
inline void check_finite_row(const T* s, int64_t P, const char* fn) {
  for (int64_t p = 0; p < P; ++p) {
    TORCH_CHECK(std::isfinite(s[p]), fn, ": the texture intensity is not finite (the input "
                "holds NaN or Inf)");
  }
}

}  // namespace detail
}  // namespace sstkd_texstat

// Shared helpers of the C++ CPU texture-statistics kernels (texture_cos_sim_cpu.cpp,
// texture_qco_cpu.cpp, texture_dtiem_cpu.cpp; schemas in csrc/texture_stats.cpp): tolerances,
// argument checks and a fixed-order row sum. The per-value quantisation rules shared with the
// CUDA kernels are in csrc/texture_stats_math.h.
#pragma once
#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>

namespace sstkd_texstat {
namespace detail {

inline constexpr double kNormEps = 1e-12;  // F.normalize's eps
inline constexpr double kQco2dEps = 1e-6;  // STLNet QCO_2d's epsilon on the co-occurrence total
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

// sum_i x[i] (* w[i]) in double, with 4 independent accumulators (a fixed order).
template <typename T>
inline double sum_row(const T* x, const T* w, int64_t n) {
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  int64_t i = 0;
  if (w == nullptr) {
    for (; i + 4 <= n; i += 4) {
      a0 += x[i];
      a1 += x[i + 1];
      a2 += x[i + 2];
      a3 += x[i + 3];
    }
    for (; i < n; ++i) a0 += x[i];
  } else {
    for (; i + 4 <= n; i += 4) {
      a0 += double(x[i]) * double(w[i]);
      a1 += double(x[i + 1]) * double(w[i + 1]);
      a2 += double(x[i + 2]) * double(w[i + 2]);
      a3 += double(x[i + 3]) * double(w[i + 3]);
    }
    for (; i < n; ++i) a0 += double(x[i]) * double(w[i]);
  }
  return (a0 + a1) + (a2 + a3);
}

}  // namespace detail
}  // namespace sstkd_texstat

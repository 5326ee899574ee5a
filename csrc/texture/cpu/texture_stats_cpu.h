// Shared helpers of the C++ CPU texture-statistics kernels (texture_cos_sim_cpu.cpp,
// texture_qco_cpu.cpp, texture_dtiem_cpu.cpp; schemas in csrc/texture/texture_stats.cpp): work-item
// size and the finiteness check. The per-value quantisation rules and the tolerances shared
// with the CUDA kernels are in csrc/texture/texture_stats_math.h, the argument checks shared with them
// in csrc/texture/texture_stats_checks.h.
#pragma once
#include <ATen/ATen.h>

#include "../texture_stats_checks.h"

#include <cmath>
#include <cstdint>

namespace sstkd { namespace texture { namespace cpu {
namespace detail {

using namespace ::sstkd::texture::checks;  // NOLINT: the argument checks shared with CUDA

inline constexpr int64_t kChunk = 512;     // pixels per work item of the per-pixel passes

template <typename T>
inline void check_finite_row(const T* s, int64_t P, const char* fn) {
  for (int64_t p = 0; p < P; ++p) {
    TORCH_CHECK(std::isfinite(s[p]), fn, ": the texture intensity is not finite (the input "
                "holds NaN or Inf)");
  }
}

}  // namespace detail
}  // namespace cpu
}  // namespace texture
}  // namespace sstkd

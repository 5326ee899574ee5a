// The baseline build of the plane kernels (every CPU) and the choice between the builds.
#include "plane_kernels.h"

#include <cstdlib>
#include <cstring>

#define SSTKD_PLANE_ISA base
#include "plane_kernels_impl.h"

namespace sstkd { namespace linprog {

#if SSTKD_X86_VARIANTS
namespace avx2 {
template <typename T>
void run_plane(const int64_t*, int64_t, const int32_t*, const T*, const PlaneSpaces<T>&, bool);
}
namespace avx512 {
template <typename T>
void run_plane(const int64_t*, int64_t, const int32_t*, const T*, const PlaneSpaces<T>&, bool);
}
#endif

CpuIsa cpu_isa() {
  CpuIsa best = CpuIsa::kBase;
#if SSTKD_X86_VARIANTS
  static const CpuIsa supported = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return CpuIsa::kAvx512;
    if (__builtin_cpu_supports("avx2")) return CpuIsa::kAvx2;
    return CpuIsa::kBase;
  }();
  best = supported;
#endif
  const char* want = std::getenv("SSTKD_CPU_ISA");
  if (want != nullptr && std::strcmp(want, "base") == 0) return CpuIsa::kBase;
  if (want != nullptr && std::strcmp(want, "avx2") == 0 && best == CpuIsa::kAvx512) {
    return CpuIsa::kAvx2;
  }
  return best;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx512: return "avx512";
    case CpuIsa::kAvx2: return "avx2";
    default: return "base";
  }
}

template <typename T>
void run_plane(CpuIsa isa, const int64_t* instr, int64_t n_instr, const int32_t* tables,
               const T* coefs, const PlaneSpaces<T>& sp, bool split) {
#if SSTKD_X86_VARIANTS
  if (isa == CpuIsa::kAvx512) return avx512::run_plane<T>(instr, n_instr, tables, coefs, sp, split);
  if (isa == CpuIsa::kAvx2) return avx2::run_plane<T>(instr, n_instr, tables, coefs, sp, split);
#endif
  base::run_plane<T>(instr, n_instr, tables, coefs, sp, split);
}

template void run_plane<float>(CpuIsa, const int64_t*, int64_t, const int32_t*, const float*,
                               const PlaneSpaces<float>&, bool);
template void run_plane<double>(CpuIsa, const int64_t*, int64_t, const int32_t*, const double*,
                                const PlaneSpaces<double>&, bool);

}  // namespace linprog
}  // namespace sstkd

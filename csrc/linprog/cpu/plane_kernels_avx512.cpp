// The AVX-512F build of the plane kernels (x86-64 with GCC; empty elsewhere): see plane_kernels.h.
#include "plane_kernels.h"

#if SSTKD_X86_VARIANTS
// Every header first: what they define keeps the baseline target; only the kernels below
// are built for AVX-512F.
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#pragma GCC target("avx512f")
#define SSTKD_PLANE_ISA avx512
#define SSTKD_TAP_BLOCK_BYTES 512  // 32 zmm registers
#include "plane_kernels_impl.h"
#endif

// The AVX2 build of the plane kernels (x86-64 with GCC; empty elsewhere): see plane_kernels.h.
#include "plane_kernels.h"

#if SSTKD_X86_VARIANTS
// Every header first: what they define keeps the baseline target; only the kernels below
// are built for AVX2.
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#pragma GCC target("avx2")
#define SSTKD_PLANE_ISA avx2
#include "plane_kernels_impl.h"
#endif

// Constants of the kernels, defined once for C++ and CUDA. The Python side defines the same
// values once in sstkd_ops/constants.py; tests/test_constants.py checks that the two agree,
// both in this header and in the compiled module (sstkd_ops._C exposes them).
#pragma once
#include <cstdint>

namespace sstkd {

// Largest level count of every texture op on every backend (sstkd_ops.MAX_LEVELS): bounds
// the (L, L) co-occurrence and the int32 codes.
inline constexpr int64_t kMaxLevels = 4096;
// F.normalize's eps: the cosine similarity divides by max(|v|, kNormEps).
inline constexpr double kNormEps = 1e-12;
// STLNet QCO_2d's epsilon on the co-occurrence total.
inline constexpr double kQco2dEps = 1e-6;

}  // namespace sstkd

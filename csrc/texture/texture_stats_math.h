// Per-value quantisation rules of the texture-statistics ops, shared by the C++ and CUDA
// kernels so that both backends encode every value identically (host and device inline).
#pragma once
#include <cmath>
#include <cstdint>

#include "../constants.h"
#include "../hostdevice.h"

namespace sstkd { namespace texture { namespace math {

constexpr int kMaxCodes = 4;  // STLNet codes per pixel (2 in exact arithmetic)
using ::sstkd::kMaxLevels;  // the constants shared by every backend (csrc/constants.h)
using ::sstkd::kNormEps;
using ::sstkd::kQco2dEps;

template <typename T>
SSTKD_HD T abs_of(T v) {
  return v < T(0) ? -v : v;
}

template <typename T>
SSTKD_HD T sign_of(T v) {
  return static_cast<T>((T(0) < v) - (v < T(0)));
}

// STLNet's level fraction (2k + 1) / (2L), formed in float32 as the official code does.
SSTKD_HD float level_frac(int64_t k, int64_t L) {
  return (2.0f * static_cast<float>(k) + 1.0f) / static_cast<float>(2 * L);
}

// STLNet's masked codes of one value: levels k with 1 - |q_k - s| > 1 - delta.
template <typename T>
SSTKD_HD int stl_codes(T s, const T* q, int64_t L, T delta, int* ks, T* rs) {
  if (!(delta > T(0))) return 0;
  const T thresh = T(1) - delta;
  int64_t kc = static_cast<int64_t>(floor(double(s - q[0]) / double(delta) + 0.5));
  kc = kc < 0 ? 0 : (kc > L - 1 ? L - 1 : kc);
  int n = 0;
  const int64_t k0 = kc - 2 < 0 ? 0 : kc - 2, k1 = kc + 2 > L - 1 ? L - 1 : kc + 2;
  for (int64_t k = k0; k <= k1; ++k) {
    const T r = T(1) - abs_of(q[k] - s);
    if (r > thresh && n < kMaxCodes) {
      ks[n] = static_cast<int>(k);
      rs[n] = r;
      ++n;
    }
  }
  return n;
}

// Index of the last level <= s (-1 if none): torch.searchsorted(right=True) - 1.
template <typename T>
SSTKD_HD int64_t last_le(const T* lv, int64_t N, T s) {
  int64_t lo = 0, hi = N;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (lv[mid] <= s) lo = mid + 1; else hi = mid;
  }
  return lo - 1;
}

// Hat code: weight 1 - w on level k, w on k + 1 (k in [0, N-2]); inside = w depends on s.
template <typename T>
SSTKD_HD void hat_code(T s, const T* lv, int64_t N, int64_t& k, T& w, bool& inside) {
  const int64_t j = last_le(lv, N, s);
  inside = j >= 0 && j <= N - 2;
  k = j < 0 ? 0 : (j > N - 2 ? N - 2 : j);
  w = inside ? (s - lv[k]) / (lv[k + 1] - lv[k]) : (j < 0 ? T(0) : T(1));
}

// Nearest level, first index on ties (torch argmin of |s - L|).
template <typename T>
SSTKD_HD int64_t nearest_level(T s, const T* lv, int64_t N) {
  const int64_t a = last_le(lv, N, s);
  int64_t k;
  if (a < 0) k = 0;
  else if (a >= N - 1) k = N - 1;
  else k = abs_of(s - lv[a]) <= abs_of(s - lv[a + 1]) ? a : a + 1;
  while (k > 0 && lv[k - 1] == lv[k]) --k;
  return k;
}

// Backward of STLNet's (co-)counts through the codes of pixel p of a row-major h x w cell.
// dc = d loss / d counts ((L) values, or (L, L) with cooc: pairs with the (+1, +1) neighbour).
// Returns the number n of codes of pixel p; codes[m] is its level and contrib[m] = dE_m *
// sign(q_k - s_p), so d loss / d s_p = sum_m contrib[m] and d loss / d q_k -= contrib[m].
template <typename T>
SSTKD_HD int qco_pixel_grad(const T* S, int64_t p, int64_t h, int64_t w, const T* q, int64_t L,
                            T delta, const double* dc, bool cooc, int* codes, double* contrib) {
  int kb[kMaxCodes], ka[kMaxCodes];
  T rr[kMaxCodes], rb[kMaxCodes], ra[kMaxCodes];
  const int n = stl_codes(S[p], q, L, delta, codes, rr);
  int nb = 0, na = 0;  // codes of the (+1, +1) and the (-1, -1) neighbour, once per pixel
  if (cooc && n > 0) {
    const int64_t y = p / w, x = p % w;
    if (y + 1 < h && x + 1 < w) nb = stl_codes(S[p + w + 1], q, L, delta, kb, rb);
    if (y > 0 && x > 0) na = stl_codes(S[p - w - 1], q, L, delta, ka, ra);
  }
  for (int m = 0; m < n; ++m) {
    double dE = 0;
    if (!cooc) {
      dE = dc[codes[m]];
    } else {
      for (int j = 0; j < nb; ++j) dE += dc[codes[m] * L + kb[j]] * double(rb[j]);
      for (int i = 0; i < na; ++i) dE += double(ra[i]) * dc[ka[i] * L + codes[m]];
    }
    const double sg = sign_of(q[codes[m]] - S[p]);
    contrib[m] = dE * sg;
  }
  return n;
}

}  // namespace math
}  // namespace texture
}  // namespace sstkd

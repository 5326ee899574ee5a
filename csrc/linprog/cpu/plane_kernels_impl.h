// The per-plane kernels of sstkd_ops::linear_program on the CPU (see plane_kernels.h),
// compiled once per instruction set: a translation unit includes its headers, sets its target
// and SSTKD_PLANE_ISA (the namespace of this build), then includes this file.
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "../linear_program.h"

namespace sstkd { namespace linprog { namespace SSTKD_PLANE_ISA {

// Smallest share of one instruction given to a thread, in multiply-adds (or elements): below
// it an instruction runs on the calling thread, so small planes pay no threading overhead.
// (2 threads, one plane, pdfb_dec 9-7/pkva (3, 3): 1 << 14 took 0.80x the time of 1 << 16 at
// 512^2, 0.92x at 1024^2, the same at 2048^2; 1 << 12 no better.)
constexpr int64_t kGrainWork = 1 << 14;

// Runs f(begin, end) over [0, n): split across threads when `split`, else in one call.
template <typename F>
void for_range(bool split, int64_t n, int64_t work_per_item, const F& f) {
  if (n <= 0) return;
  if (!split) {
    f(int64_t(0), n);
    return;
  }
  const int64_t grain = std::max<int64_t>(1, kGrainWork / std::max<int64_t>(1, work_per_item));
  at::parallel_for(0, n, grain, f);
}

// Width in bytes of a block of outputs whose partial sums a tap loop keeps in registers (a
// build sets it for its vector registers: 16 of them at a time).
#ifndef SSTKD_TAP_BLOCK_BYTES
#define SSTKD_TAP_BLOCK_BYTES 256
#endif
template <typename T>
constexpr int64_t kTapBlock = SSTKD_TAP_BLOCK_BYTES / sizeof(T);
using FullBlock = std::integral_constant<int64_t, 0>;  // tag: m is the compile-time block

// The number of outputs of a block: kTapBlock<T> for FullBlock (a compile-time trip count, so
// the partial sums stay in registers; a runtime count spills them), else `width`.
template <typename T, typename Width>
constexpr int64_t block_width(Width width) {
  if constexpr (std::is_same_v<Width, FullBlock>) {
    return kTapBlock<T>;
  } else {
    return width;
  }
}

// One block of tap_sum: block_width(width) outputs. kUnit: step == 1.
template <typename T, bool kUnit, typename Width>
inline void tap_block(T* out, Width width, const T* k, int64_t l1, int64_t l2, const T* in,
                      int64_t row_stride, int64_t step, bool acc, bool skip_zeros) {
  const int64_t m = block_width<T>(width);
  T s[kTapBlock<T>];
  for (int64_t j = 0; j < m; ++j) s[j] = acc ? out[j] : T(0);
  for (int64_t a = 0; a < l1; ++a) {
    const T* row = in + a * row_stride;
    for (int64_t b = 0; b < l2; ++b) {
      const T w = k[a * l2 + b];
      if (skip_zeros && w == T(0)) continue;
      const T* v = row + b;
      if constexpr (kUnit) {
        for (int64_t j = 0; j < m; ++j) s[j] += w * v[j];
      } else {
        for (int64_t j = 0; j < m; ++j) s[j] += w * v[j * step];
      }
    }
  }
  for (int64_t j = 0; j < m; ++j) out[j] = s[j];
}

template <typename T, bool kUnit>
void tap_sum_steps(T* out, int64_t n, const T* k, int64_t l1, int64_t l2, const T* in,
                   int64_t row_stride, int64_t step, bool acc, bool skip_zeros) {
  constexpr int64_t B = kTapBlock<T>;
  int64_t j0 = 0;
  for (; j0 + B <= n; j0 += B) {
    tap_block<T, kUnit>(out + j0, FullBlock{}, k, l1, l2, in + j0 * step, row_stride, step,
                        acc, skip_zeros);
  }
  if (j0 < n) {
    tap_block<T, kUnit>(out + j0, n - j0, k, l1, l2, in + j0 * step, row_stride, step, acc,
                        skip_zeros);
  }
}

// out[j] (+)= sum_{a, b} k[a, b] in[a * row_stride + b + j * step], j < n, over a (l1, l2)
// grid of taps: each output adds its taps in order (a, then b; starting from 0, or from out[j]
// with `acc`), with the partial sums of a block of outputs in registers (one load per tap, one
// store per output: not one read-modify-write per tap). `skip_zeros` leaves out zero taps.
template <typename T>
void tap_sum(T* out, int64_t n, const T* k, int64_t l1, int64_t l2, const T* in,
             int64_t row_stride, int64_t step, bool acc, bool skip_zeros) {
  if (step == 1) {
    tap_sum_steps<T, true>(out, n, k, l1, l2, in, row_stride, 1, acc, skip_zeros);
  } else {
    tap_sum_steps<T, false>(out, n, k, l1, l2, in, row_stride, step, acc, skip_zeros);
  }
}

// Rows [r0, r1) of the column pass of sep_corr: tmp[r, j] = sum_b f2[b] src[r + p1, s2 j + p2 + b].
template <typename T>
void sep_corr_cols(const T* src, int64_t Ws, int64_t Wo, int64_t p1, int64_t s2, int64_t p2,
                   const T* f2, int64_t l2, T* tmp, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    tap_sum(tmp + r * Wo, Wo, f2, 1, l2, src + (r + p1) * Ws + p2, 0, s2, false, false);
  }
}

// Rows [i0, i1) of the row pass of sep_corr: dst[i, j] (+)= sum_a f1[a] tmp[s1 i + a, j]
// (tmp rows `ts` apart).
template <typename T>
void sep_corr_rows(T* dst, int64_t Wo, int64_t s1, const T* f1, int64_t l1, const T* tmp,
                   int64_t ts, bool acc, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) {
    tap_sum(dst + i * Wo, Wo, f1, l1, 1, tmp + i * s1 * ts, ts, 1, acc, false);
  }
}

// A pass of a separable filter that is the identity (one tap of 1, stride 1): skipped, since
// 0 + 1 * v == v (only the sign of a zero can differ).
template <typename T>
bool identity_pass(const T* f, int64_t len, int64_t stride) {
  return len == 1 && stride == 1 && f[0] == T(1);
}

// Valid separable correlation with stride/phase; tmp holds ((Ho-1) s1 + l1, Wo). A 1-D filter
// (each pass of the LP filters, the pkva ladder filters) runs one pass, straight from src or into dst.
template <typename T>
void sep_corr(const T* src, int64_t Ws, T* dst, int64_t Ho, int64_t Wo, int64_t s1,
              int64_t p1, int64_t s2, int64_t p2, const T* f1, int64_t l1, const T* f2,
              int64_t l2, T* tmp, bool acc, bool split) {
  if (identity_pass(f2, l2, s2)) {  // the column pass would copy src's window
    for_range(split, Ho, Wo * l1, [&](int64_t i0, int64_t i1) {
      sep_corr_rows(dst, Wo, s1, f1, l1, src + p1 * Ws + p2, Ws, acc, i0, i1);
    });
    return;
  }
  if (!acc && identity_pass(f1, l1, s1)) {  // the row pass would copy tmp into dst
    for_range(split, Ho, Wo * l2, [&](int64_t r0, int64_t r1) {
      sep_corr_cols(src, Ws, Wo, p1, s2, p2, f2, l2, dst, r0, r1);
    });
    return;
  }
  const int64_t rows = (Ho - 1) * s1 + l1;
  for_range(split, rows, Wo * l2, [&](int64_t r0, int64_t r1) {
    sep_corr_cols(src, Ws, Wo, p1, s2, p2, f2, l2, tmp, r0, r1);
  });
  for_range(split, Ho, Wo * l1, [&](int64_t i0, int64_t i1) {
    sep_corr_rows(dst, Wo, s1, f1, l1, tmp, Wo, acc, i0, i1);
  });
}

// kSepCorrRowsFirst: for each output row, its source rows filtered with f1 into a row of
// (Wo - 1) s2 + l2 values (each rounded, as a column filter's output), then that row filtered
// with f2 (and, with `acc`, the result added to dst). The same sums in the same order as the
// two separable instructions it replaces, without their intermediate plane.
template <typename T>
void sep_corr_rows_first(const T* src, int64_t Ws, T* dst, int64_t Ho, int64_t Wo, int64_t s1,
                         int64_t p1, int64_t s2, int64_t p2, const T* f1, int64_t l1,
                         const T* f2, int64_t l2, bool acc, bool split) {
  const int64_t wspan = (Wo - 1) * s2 + l2;
  for_range(split, Ho, wspan * l1 + Wo * l2, [&](int64_t i0, int64_t i1) {
    std::vector<T> row(wspan), out(acc ? Wo : 0);
    for (int64_t i = i0; i < i1; ++i) {
      tap_sum(row.data(), wspan, f1, l1, 1, src + (i * s1 + p1) * Ws + p2, Ws, 1, false,
              false);
      T* d = dst + i * Wo;
      if (!acc) {
        tap_sum(d, Wo, f2, 1, l2, row.data(), 0, s2, false, false);
        continue;
      }
      tap_sum(out.data(), Wo, f2, 1, l2, row.data(), 0, s2, false, false);
      for (int64_t j = 0; j < Wo; ++j) d[j] += out[j];
    }
  });
}

// kUpsampledSepCorr: kSepCorrRowsFirst (unit strides, phases p1, p2) of the virtual plane U
// with U[2 r + ph1, 2 c + ph2] = src[r, c] (src is (Hs, Ws)) and zeros elsewhere, whose taps
// are skipped. Output row i: its nonzero source rows (every other tap of f1) filtered into a
// row t over the source columns it reaches; then the outputs j of each parity, whose nonzero
// taps are every other tap of f2 from one end, read contiguous elements of t.
template <typename T>
void upsampled_sep_corr(const T* src, int64_t Ws, T* dst, int64_t Ho, int64_t Wo, int64_t p1,
                        int64_t p2, int64_t ph1, int64_t ph2, const T* f1, int64_t l1,
                        const T* f2, int64_t l2, bool acc, bool split) {
  // f[b0], f[b0 + 2], ... contiguous, for b0 = 0, 1
  std::vector<T> f1s[2], f2s[2];
  for (int64_t a = 0; a < l1; ++a) f1s[a & 1].push_back(f1[a]);
  for (int64_t b = 0; b < l2; ++b) f2s[b & 1].push_back(f2[b]);
  const int64_t c_lo = std::max<int64_t>(0, (p2 - ph2 + 1) >> 1);  // first source column read
  const int64_t c_hi = (Wo + p2 + l2 - 2 - ph2) >> 1;  // last (inclusive)
  const int64_t m = std::max<int64_t>(0, c_hi - c_lo + 1);
  for_range(split, Ho, m * (l1 + 1) / 2 + Wo * (l2 + 1) / 2, [&](int64_t i0, int64_t i1) {
    std::vector<T> t(m), o((Wo + 1) / 2);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t u0 = i + p1;  // first U row of output row i
      const int64_t a0 = (ph1 - u0) & 1;  // its first tap on a nonzero row
      const int64_t r0 = (u0 + a0 - ph1) >> 1;
      const int64_t na = a0 < l1 ? int64_t(f1s[a0].size()) : 0;
      tap_sum(t.data(), m, f1s[a0].data(), na, 1, src + r0 * Ws + c_lo, Ws, 1, false, false);
      T* d = dst + i * Wo;
      for (int64_t jq = 0; jq < 2 && jq < Wo; ++jq) {  // outputs jq, jq + 2, ...
        const int64_t b0 = (jq + p2 - ph2) & 1;  // their first tap on a nonzero column
        const int64_t nb = b0 < l2 ? int64_t(f2s[b0].size()) : 0;
        const int64_t base = ((jq + p2 + b0 - ph2) >> 1) - c_lo;
        const int64_t nq = (Wo - jq + 1) / 2;
        tap_sum(o.data(), nq, f2s[b0].data(), 1, nb, t.data() + base, 0, 1, false, false);
        if (acc) {
          for (int64_t k = 0; k < nq; ++k) d[jq + 2 * k] += o[k];
        } else {
          for (int64_t k = 0; k < nq; ++k) d[jq + 2 * k] = o[k];
        }
      }
    }
  });
}

// The rows i in [lo, hi] of g that reach the destination row r = s1 i + a (0 <= a < l1).
inline void rows_reaching(int64_t r, int64_t s1, int64_t l1, int64_t Ho, int64_t& lo,
                          int64_t& hi) {
  lo = r - l1 + 1 <= 0 ? 0 : (r - l1 + s1) / s1;  // ceil((r - l1 + 1) / s1)
  hi = std::min<int64_t>(Ho - 1, r / s1);
}

// Destination rows [r0, r1) of a transposed correlation (rows `ws` apart from `dst`): f(drow,
// i, a) for each source row i that reaches row r = s1 i + a, in increasing i.
template <typename T, typename F>
void each_source_row(T* dst, int64_t ws, int64_t s1, int64_t l1, int64_t Ho, int64_t r0,
                     int64_t r1, const F& f) {
  for (int64_t r = r0; r < r1; ++r) {
    int64_t lo, hi;
    rows_reaching(r, s1, l1, Ho, lo, hi);
    for (int64_t i = lo; i <= hi; ++i) f(dst + r * ws, i, r - i * s1);
  }
}

// trow (length (Wo - 1) s2 + l2) = the row-transpose of grow (length Wo).
template <typename T>
void row_transpose(const T* grow, int64_t Wo, int64_t s2, const T* f2, int64_t l2, T* trow) {
  const int64_t wspan = (Wo - 1) * s2 + l2;
  for (int64_t c = 0; c < wspan; ++c) trow[c] = T(0);
  for (int64_t b = 0; b < l2; ++b) {
    const T w = f2[b];
    T* t = trow + b;
    if (s2 == 1) {
      for (int64_t j = 0; j < Wo; ++j) t[j] += w * grow[j];
    } else {
      for (int64_t j = 0; j < Wo; ++j) t[j * s2] += w * grow[j];
    }
  }
}

template <typename T>
void sep_corr_t(const T* g, int64_t Ho, int64_t Wo, T* dst, int64_t Ws, int64_t s1,
                int64_t p1, int64_t s2, int64_t p2, const T* f1, int64_t l1, const T* f2,
                int64_t l2, T* tmp, bool split) {
  // tmp[i, :] (length wspan) = row-transpose of g[i, :]; then spread over rows, each
  // destination row summing its source rows in increasing i. An identity filter skips its
  // pass: the spread reads g itself, or each transposed row is added as it is made.
  const int64_t wspan = (Wo - 1) * s2 + l2;
  if (identity_pass(f1, l1, s1)) {
    for_range(split, Ho, wspan * l2, [&](int64_t i0, int64_t i1) {
      std::vector<T> trow(wspan);
      for (int64_t i = i0; i < i1; ++i) {
        row_transpose(g + i * Wo, Wo, s2, f2, l2, trow.data());
        T* drow = dst + (i + p1) * Ws + p2;
        for (int64_t c = 0; c < wspan; ++c) drow[c] += trow[c];
      }
    });
    return;
  }
  const T* spread = g;
  if (!identity_pass(f2, l2, s2)) {
    spread = tmp;
    for_range(split, Ho, Wo * l2, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        row_transpose(g + i * Wo, Wo, s2, f2, l2, tmp + i * wspan);
      }
    });
  }
  const int64_t rows = (Ho - 1) * s1 + l1;
  const int64_t per_row = wspan * ((l1 + s1 - 1) / s1);
  for_range(split, rows, per_row, [&](int64_t r0, int64_t r1) {
    each_source_row(dst + p1 * Ws + p2, Ws, s1, l1, Ho, r0, r1, [&](T* drow, int64_t i,
                                                                   int64_t a) {
      const T w = f1[a];
      const T* trow = spread + i * wspan;
      for (int64_t c = 0; c < wspan; ++c) drow[c] += w * trow[c];
    });
  });
}

template <typename T>
void corr2d(const T* src, int64_t Ws, T* dst, int64_t Ho, int64_t Wo, int64_t s1, int64_t p1,
            int64_t s2, int64_t p2, const T* k, int64_t l1, int64_t l2, bool acc, bool split) {
  for_range(split, Ho, Wo * l1 * l2, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      tap_sum(dst + i * Wo, Wo, k, l1, l2, src + (i * s1 + p1) * Ws + p2, Ws, s2, acc, true);
    }
  });
}

// One block of corr2d_t_row: destination columns [c0, c0 + m) of the row (FullBlock: m =
// kTapBlock<T> and every tap's source columns inside the row, a compile-time trip count).
template <typename T, typename Width>
inline void corr2d_t_block(const T* g, int64_t Wo, T* drow, int64_t c0, Width width,
                           int64_t r, int64_t lo, int64_t hi, int64_t s1, const T* k,
                           int64_t l2) {
  constexpr bool kFull = std::is_same_v<Width, FullBlock>;
  const int64_t m = block_width<T>(width);
  T s[kTapBlock<T>];
  for (int64_t c = 0; c < m; ++c) s[c] = drow[c0 + c];
  for (int64_t i = lo; i <= hi; ++i) {
    const T* grow = g + i * Wo;
    const int64_t a = r - i * s1;
    for (int64_t b = 0; b < l2; ++b) {
      const T w = k[a * l2 + b];
      if (w == T(0)) continue;
      const T* v = grow + c0 - b;
      if constexpr (kFull) {
        for (int64_t c = 0; c < m; ++c) s[c] += w * v[c];
      } else {  // columns c0 + c with 0 <= c0 + c - b < Wo
        const int64_t c_lo = std::max<int64_t>(0, b - c0);
        const int64_t c_hi = std::min<int64_t>(m, b + Wo - c0);
        for (int64_t c = c_lo; c < c_hi; ++c) s[c] += w * v[c];
      }
    }
  }
  for (int64_t c = 0; c < m; ++c) drow[c0 + c] = s[c];
}

// Destination row r (Wo + l2 - 1 columns) of corr2d_t at column step 1: drow[c] += k[a, b]
// g[i, c - b] over the source rows i reaching r (a = r - s1 i) in increasing i, then b, as the
// general loop adds them, a block of columns at a time.
template <typename T>
void corr2d_t_row(const T* g, int64_t Ho, int64_t Wo, T* drow, int64_t r, int64_t s1,
                  const T* k, int64_t l1, int64_t l2) {
  constexpr int64_t B = kTapBlock<T>;
  const int64_t wspan = Wo + l2 - 1;
  int64_t lo, hi;
  rows_reaching(r, s1, l1, Ho, lo, hi);
  for (int64_t c0 = 0; c0 < wspan; c0 += B) {
    const int64_t m = std::min(B, wspan - c0);
    // every tap b reads columns c0 - b .. c0 + m - 1 - b of the source row
    if (m == B && c0 >= l2 - 1 && c0 + B <= Wo) {
      corr2d_t_block(g, Wo, drow, c0, FullBlock{}, r, lo, hi, s1, k, l2);
    } else {
      corr2d_t_block(g, Wo, drow, c0, m, r, lo, hi, s1, k, l2);
    }
  }
}

template <typename T>
void corr2d_t(const T* g, int64_t Ho, int64_t Wo, T* dst, int64_t Ws, int64_t s1, int64_t p1,
              int64_t s2, int64_t p2, const T* k, int64_t l1, int64_t l2, bool split) {
  // Each destination row sums its source rows in increasing i, then taps in increasing b.
  const int64_t rows = (Ho - 1) * s1 + l1;
  const int64_t per_row = Wo * l2 * ((l1 + s1 - 1) / s1);
  for_range(split, rows, per_row, [&](int64_t r0, int64_t r1) {
    if (s2 == 1) {  // blocks of destination columns, their partial sums in registers
      for (int64_t r = r0; r < r1; ++r) corr2d_t_row(g, Ho, Wo, dst + (r + p1) * Ws + p2, r,
                                                     s1, k, l1, l2);
      return;
    }
    each_source_row(dst + p1 * Ws + p2, Ws, s1, l1, Ho, r0, r1, [&](T* drow, int64_t i,
                                                                   int64_t a) {
      const T* grow = g + i * Wo;
      for (int64_t b = 0; b < l2; ++b) {
        const T w = k[a * l2 + b];
        if (w == T(0)) continue;
        T* d = drow + b;
        for (int64_t j = 0; j < Wo; ++j) d[j * s2] += w * grow[j];
      }
    });
  });
}

// kCheckerCorr2d: the 2-D correlation (unit strides) at the outputs (i, j) with (i + j) % 2 ==
// parity, zeros at the others (which nothing reads), from a source whose rows are stored split:
// a row's even columns, then its odd ones (from (Ws + 1) / 2 on). For output column 2 j' + phase
// (phase = (i + parity) % 2), tap (a, b) reads column 2 j' + t (t = p2 + phase + b): element
// j' + t / 2 of half t % 2, a contiguous run over j'. Every kept output adds the same taps in
// the same order as corr2d.
template <typename T, typename Width>
inline void checker_block(T* out, Width width, const T* rows, int64_t Ws, int64_t j0,
                          int64_t odd_start, int64_t p2, int64_t phase, const T* k,
                          int64_t l1, int64_t l2) {
  const int64_t m = block_width<T>(width);
  T s[kTapBlock<T>];
  for (int64_t j = 0; j < m; ++j) s[j] = T(0);
  for (int64_t a = 0; a < l1; ++a) {
    for (int64_t b = 0; b < l2; ++b) {
      const T w = k[a * l2 + b];
      if (w == T(0)) continue;
      const int64_t t = p2 + phase + b;
      const T* v = rows + a * Ws + (t & 1) * odd_start + (t >> 1) + j0;
      for (int64_t j = 0; j < m; ++j) s[j] += w * v[j];
    }
  }
  // output j sits at column 2 j + phase; the other parity's columns get zeros
  if (phase == 0) {
    for (int64_t j = 0; j < m; ++j) {
      out[2 * j] = s[j];
      out[2 * j + 1] = T(0);
    }
  } else {
    for (int64_t j = 0; j < m; ++j) {
      out[2 * j] = T(0);
      out[2 * j + 1] = s[j];
    }
  }
}

template <typename T>
void checker_corr2d(const T* src, int64_t Ws, T* dst, int64_t Ho, int64_t Wo, int64_t p1,
                    int64_t p2, int64_t parity, const T* k, int64_t l1, int64_t l2,
                    bool split) {
  const int64_t half = Wo / 2;
  constexpr int64_t B = kTapBlock<T>;
  for_range(split, Ho, half * l1 * l2, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t phase = (i + parity) & 1;
      const T* rows = src + (i + p1) * Ws;
      T* out = dst + i * Wo;
      int64_t j0 = 0;
      for (; j0 + B <= half; j0 += B) {
        checker_block(out + 2 * j0, FullBlock{}, rows, Ws, j0, (Ws + 1) / 2, p2, phase, k,
                      l1, l2);
      }
      if (j0 < half) {
        checker_block(out + 2 * j0, half - j0, rows, Ws, j0, (Ws + 1) / 2, p2, phase, k, l1,
                      l2);
      }
    }
  });
}

// One run of kGatherRuns: dst[d0 + k] (+)= src[s0 + step k], k < len (s0 == -1: zeros);
// kScaled (kScaledGatherRuns): dst[d0 + k] (+)= alpha src[s0 + step k] (a zero run: alpha 0,
// as alpha times a gathered zero).
template <bool kScaled, typename T>
void gather_run(const int32_t* run, const T* src, T* dst, bool acc, T alpha) {
  const auto value = [alpha](T v) {
    if constexpr (kScaled) {
      return alpha * v;
    } else {
      return v;
    }
  };
  T* d = dst + run[0];
  const int64_t len = run[1], step = run[3];
  if (run[2] < 0) {
    if (!acc) {
      std::fill(d, d + len, value(T(0)));
    } else if (kScaled) {  // adding a gathered zero adds nothing, unless it is scaled
      for (int64_t k = 0; k < len; ++k) d[k] += value(T(0));
    }
    return;
  }
  const T* s = src + run[2];
  if (step == 1) {
    if (acc) {
      for (int64_t k = 0; k < len; ++k) d[k] += value(s[k]);
    } else if (!kScaled) {
      std::copy(s, s + len, d);  // memcpy: faster than the loop the compiler makes of it
    } else {
      for (int64_t k = 0; k < len; ++k) d[k] = value(s[k]);
    }
  } else if (step == 2) {  // a compile-time step (the rows split into even and odd columns):
    // vectorised as loads of contiguous elements and shuffles; a runtime step is not
    if (acc) {
      for (int64_t k = 0; k < len; ++k) d[k] += value(s[2 * k]);
    } else {
      for (int64_t k = 0; k < len; ++k) d[k] = value(s[2 * k]);
    }
  } else if (acc) {
    for (int64_t k = 0; k < len; ++k) d[k] += value(s[k * step]);
  } else {
    for (int64_t k = 0; k < len; ++k) d[k] = value(s[k * step]);
  }
}

// The runs of a kGatherRuns / kScaledGatherRuns instruction, split across threads.
template <bool kScaled, typename T>
void gather_runs(const int64_t* c, const int32_t* tables, const T* coefs, const T* src,
                 T* dst, bool acc, bool split) {
  const int32_t* runs = tables + c[5];
  const int64_t n_runs = c[6];
  const T alpha = kScaled ? coefs[c[14]] : T(1);
  for_range(split, n_runs, c[4] / std::max<int64_t>(1, n_runs), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      gather_run<kScaled>(runs + kRunCols * r, src, dst, acc, alpha);
    }
  });
}

template <typename T>
void run_plane(const int64_t* instr, int64_t n_instr, const int32_t* tables, const T* coefs,
               const PlaneSpaces<T>& sp, bool split) {
  for (int64_t q = 0; q < n_instr; ++q) {
    const int64_t* c = instr + q * kInstrCols;
    const bool acc = (c[0] & kAccumulate) != 0;
    const int64_t op = c[0] & ~kAccumulate;
    T* dst = sp.ptr(c[1]);
    const T* a = sp.ptr(c[2]);
    const int64_t n = c[4];
    switch (op) {
      case kGather: {
        const int32_t* tab = tables + c[5];
        for_range(split, n, 1, [&](int64_t k0, int64_t k1) {
          if (acc) {
            for (int64_t k = k0; k < k1; ++k) dst[k] += tab[k] >= 0 ? a[tab[k]] : T(0);
          } else {
            for (int64_t k = k0; k < k1; ++k) dst[k] = tab[k] >= 0 ? a[tab[k]] : T(0);
          }
        });
        break;
      }
      case kGatherRuns:
        gather_runs<false>(c, tables, coefs, a, dst, acc, split);
        break;
      case kScaledGatherRuns:
        gather_runs<true>(c, tables, coefs, a, dst, acc, split);
        break;
      case kScatterAdd: {
        const int32_t* rowptr = tables + c[5];
        const int32_t* col = rowptr + n + 1;
        for_range(split, n, std::max<int64_t>(1, c[6]), [&](int64_t k0, int64_t k1) {
          for (int64_t k = k0; k < k1; ++k) {
            T s = T(0);
            for (int32_t j = rowptr[k]; j < rowptr[k + 1]; ++j) s += a[col[j]];
            dst[k] += s;
          }
        });
        break;
      }
      case kZero:
        for_range(split, n, 1, [&](int64_t k0, int64_t k1) {
          for (int64_t k = k0; k < k1; ++k) dst[k] = T(0);
        });
        break;
      case kSepCorr:
        sep_corr(a, c[7], dst, c[8], c[9], c[10], c[11], c[12], c[13], coefs + c[14], c[15],
                 coefs + c[16], c[17], sp.ptr(c[3]), acc, split);
        break;
      case kSepCorrRowsFirst:
        sep_corr_rows_first(a, c[7], dst, c[8], c[9], c[10], c[11], c[12], c[13], coefs + c[14],
                            c[15], coefs + c[16], c[17], acc, split);
        break;
      case kSepCorrT:
        sep_corr_t(a, c[8], c[9], dst, c[7], c[10], c[11], c[12], c[13], coefs + c[14], c[15],
                   coefs + c[16], c[17], sp.ptr(c[3]), split);
        break;
      case kAxpby: {
        const T* b = sp.ptr(c[3]);
        const T alpha = coefs[c[14]], beta = coefs[c[16]];
        for_range(split, n, 2, [&](int64_t k0, int64_t k1) {
          for (int64_t k = k0; k < k1; ++k) dst[k] = alpha * a[k] + beta * b[k];
        });
        break;
      }
      case kUpsampledSepCorr:
        upsampled_sep_corr(a, c[7], dst, c[8], c[9], c[11], c[13], c[3] & 1, c[3] >> 1,
                           coefs + c[14], c[15], coefs + c[16], c[17], acc, split);
        break;
      case kCorr2d:
        corr2d(a, c[7], dst, c[8], c[9], c[10], c[11], c[12], c[13], coefs + c[14], c[15],
               c[17], acc, split);
        break;
      case kCheckerCorr2d:
        checker_corr2d(a, c[7], dst, c[8], c[9], c[11], c[13], c[3], coefs + c[14], c[15],
                       c[17], split);
        break;
      case kCorr2dT:
        corr2d_t(a, c[8], c[9], dst, c[7], c[10], c[11], c[12], c[13], coefs + c[14], c[15],
                 c[17], split);
        break;
      case kAxpy: {
        const T alpha = coefs[c[14]];
        for_range(split, n, 1, [&](int64_t k0, int64_t k1) {
          for (int64_t k = k0; k < k1; ++k) dst[k] += alpha * a[k];
        });
        break;
      }
      default:
        TORCH_CHECK(false, "sstkd_ops::linear_program: unknown opcode ", op, " at instruction ",
                    q);
    }
  }
}

template void run_plane<float>(const int64_t*, int64_t, const int32_t*, const float*,
                               const PlaneSpaces<float>&, bool);
template void run_plane<double>(const int64_t*, int64_t, const int32_t*, const double*,
                                const PlaneSpaces<double>&, bool);

}  // namespace SSTKD_PLANE_ISA
}  // namespace linprog
}  // namespace sstkd

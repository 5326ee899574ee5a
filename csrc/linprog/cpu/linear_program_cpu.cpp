// CPU kernel of sstkd_ops::linear_program. Many planes: one plane per task, parallel over
// planes. Fewer planes than threads (an image, a few large planes): the planes run one after
// another and each instruction splits its output rows (or elements) across the threads.
// Both schedules compute every output element with the same operations in the same order,
// so results do not depend on the thread count.
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <ATen/ATen.h>

#include <algorithm>
#include <memory>

#include "../linear_program.h"

namespace sstkd { namespace linprog {
namespace {

// Smallest share of one instruction given to a thread, in multiply-adds (or elements): below
// it an instruction runs on the calling thread, so small planes pay no threading overhead.
constexpr int64_t kGrainWork = 1 << 16;

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

// Rows [r0, r1) of the column pass of sep_corr: tmp[r, j] = sum_b f2[b] src[r + p1, s2 j + p2 + b].
template <typename T>
void sep_corr_cols(const T* src, int64_t Ws, int64_t Wo, int64_t p1, int64_t s2, int64_t p2,
                   const T* f2, int64_t l2, T* tmp, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* srow = src + (r + p1) * Ws + p2;
    T* trow = tmp + r * Wo;
    for (int64_t j = 0; j < Wo; ++j) trow[j] = T(0);
    for (int64_t b = 0; b < l2; ++b) {
      const T w = f2[b];
      const T* s = srow + b;
      if (s2 == 1) {
        for (int64_t j = 0; j < Wo; ++j) trow[j] += w * s[j];
      } else {
        for (int64_t j = 0; j < Wo; ++j) trow[j] += w * s[j * s2];
      }
    }
  }
}

// Rows [i0, i1) of the row pass of sep_corr: dst[i, j] (+)= sum_a f1[a] tmp[s1 i + a, j].
template <typename T>
void sep_corr_rows(T* dst, int64_t Wo, int64_t s1, const T* f1, int64_t l1, const T* tmp,
                   bool acc, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) {
    T* drow = dst + i * Wo;
    if (!acc) for (int64_t j = 0; j < Wo; ++j) drow[j] = T(0);
    for (int64_t a = 0; a < l1; ++a) {
      const T w = f1[a];
      const T* trow = tmp + (i * s1 + a) * Wo;
      for (int64_t j = 0; j < Wo; ++j) drow[j] += w * trow[j];
    }
  }
}

// Valid separable correlation with stride/phase; tmp holds ((Ho-1) s1 + l1, Wo).
template <typename T>
void sep_corr(const T* src, int64_t Ws, T* dst, int64_t Ho, int64_t Wo, int64_t s1,
              int64_t p1, int64_t s2, int64_t p2, const T* f1, int64_t l1, const T* f2,
              int64_t l2, T* tmp, bool acc, bool split) {
  const int64_t rows = (Ho - 1) * s1 + l1;
  for_range(split, rows, Wo * l2, [&](int64_t r0, int64_t r1) {
    sep_corr_cols(src, Ws, Wo, p1, s2, p2, f2, l2, tmp, r0, r1);
  });
  for_range(split, Ho, Wo * l1, [&](int64_t i0, int64_t i1) {
    sep_corr_rows(dst, Wo, s1, f1, l1, tmp, acc, i0, i1);
  });
}

// The rows i in [lo, hi] of g that reach the destination row r = s1 i + a (0 <= a < l1).
inline void rows_reaching(int64_t r, int64_t s1, int64_t l1, int64_t Ho, int64_t& lo,
                          int64_t& hi) {
  lo = r - l1 + 1 <= 0 ? 0 : (r - l1 + s1) / s1;  // ceil((r - l1 + 1) / s1)
  hi = std::min<int64_t>(Ho - 1, r / s1);
}

template <typename T>
void sep_corr_t(const T* g, int64_t Ho, int64_t Wo, T* dst, int64_t Ws, int64_t s1,
                int64_t p1, int64_t s2, int64_t p2, const T* f1, int64_t l1, const T* f2,
                int64_t l2, T* tmp, bool split) {
  // tmp[i, :] (length wspan) = row-transpose of g[i, :]; then spread over rows, each
  // destination row summing its source rows in increasing i.
  const int64_t wspan = (Wo - 1) * s2 + l2;
  for_range(split, Ho, Wo * l2, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      T* trow = tmp + i * wspan;
      for (int64_t c = 0; c < wspan; ++c) trow[c] = T(0);
      const T* grow = g + i * Wo;
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
  });
  const int64_t rows = (Ho - 1) * s1 + l1;
  const int64_t per_row = wspan * ((l1 + s1 - 1) / s1);
  for_range(split, rows, per_row, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      T* drow = dst + (r + p1) * Ws + p2;
      int64_t lo, hi;
      rows_reaching(r, s1, l1, Ho, lo, hi);
      for (int64_t i = lo; i <= hi; ++i) {
        const T w = f1[r - i * s1];
        const T* trow = tmp + i * wspan;
        for (int64_t c = 0; c < wspan; ++c) drow[c] += w * trow[c];
      }
    }
  });
}

template <typename T>
void corr2d(const T* src, int64_t Ws, T* dst, int64_t Ho, int64_t Wo, int64_t s1, int64_t p1,
            int64_t s2, int64_t p2, const T* k, int64_t l1, int64_t l2, bool acc, bool split) {
  for_range(split, Ho, Wo * l1 * l2, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      T* drow = dst + i * Wo;
      if (!acc) for (int64_t j = 0; j < Wo; ++j) drow[j] = T(0);
      for (int64_t a = 0; a < l1; ++a) {
        const T* srow = src + (i * s1 + a + p1) * Ws + p2;
        for (int64_t b = 0; b < l2; ++b) {
          const T w = k[a * l2 + b];
          if (w == T(0)) continue;
          const T* s = srow + b;
          for (int64_t j = 0; j < Wo; ++j) drow[j] += w * s[j * s2];
        }
      }
    }
  });
}

template <typename T>
void corr2d_t(const T* g, int64_t Ho, int64_t Wo, T* dst, int64_t Ws, int64_t s1, int64_t p1,
              int64_t s2, int64_t p2, const T* k, int64_t l1, int64_t l2, bool split) {
  // Each destination row sums its source rows in increasing i, then taps in increasing b.
  const int64_t rows = (Ho - 1) * s1 + l1;
  const int64_t per_row = Wo * l2 * ((l1 + s1 - 1) / s1);
  for_range(split, rows, per_row, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      T* drow = dst + (r + p1) * Ws + p2;
      int64_t lo, hi;
      rows_reaching(r, s1, l1, Ho, lo, hi);
      for (int64_t i = lo; i <= hi; ++i) {
        const T* grow = g + i * Wo;
        const int64_t a = r - i * s1;
        for (int64_t b = 0; b < l2; ++b) {
          const T w = k[a * l2 + b];
          if (w == T(0)) continue;
          T* d = drow + b;
          for (int64_t j = 0; j < Wo; ++j) d[j * s2] += w * grow[j];
        }
      }
    }
  });
}

// One run of kGatherRuns: dst[d0 + k] (+)= src[s0 + step k], k < len (s0 == -1: zeros).
template <typename T>
void gather_run(const int32_t* run, const T* src, T* dst, bool acc) {
  T* d = dst + run[0];
  const int64_t len = run[1], step = run[3];
  if (run[2] < 0) {
    if (!acc) std::fill(d, d + len, T(0));
    return;
  }
  const T* s = src + run[2];
  if (step == 1) {
    if (acc) {
      for (int64_t k = 0; k < len; ++k) d[k] += s[k];
    } else {
      std::copy(s, s + len, d);
    }
  } else if (acc) {
    for (int64_t k = 0; k < len; ++k) d[k] += s[k * step];
  } else {
    for (int64_t k = 0; k < len; ++k) d[k] = s[k * step];
  }
}

// Runs the program on one plane; `split` spreads each instruction over the threads.
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
      case kGatherRuns: {
        const int32_t* runs = tables + c[5];
        const int64_t n_runs = c[6];
        for_range(split, n_runs, n / std::max<int64_t>(1, n_runs), [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) gather_run(runs + kRunCols * r, a, dst, acc);
        });
        break;
      }
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
      case kCorr2d:
        corr2d(a, c[7], dst, c[8], c[9], c[10], c[11], c[12], c[13], coefs + c[14], c[15],
               c[17], acc, split);
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

at::Tensor linear_program_cpu(const at::Tensor& x, const at::Tensor& instr,
                              const at::Tensor& tables, const at::Tensor& coefs,
                              int64_t out_numel, int64_t ws_numel) {
  check_program_args("sstkd_ops::linear_program (CPU)", x, instr, tables, coefs, out_numel,
                     ws_numel);
  const auto xc = x.contiguous();
  const auto ic = instr.contiguous();
  const auto tc = tables.contiguous();
  const int64_t planes = xc.size(0);
  const int64_t in_numel = xc.size(1);
  auto out = at::empty({planes, out_numel}, xc.options());
  if (planes == 0) return out;
  const int64_t n_instr = ic.size(0);
  const int64_t* ip = ic.data_ptr<int64_t>();
  // Fewer planes than threads (an image): the threads share each instruction, and the check.
  const bool split = planes < at::get_num_threads() && !at::in_parallel_region();
  // On the host the full check is a plain scan (no device copy): cheap next to the planes.
  for_range(split, n_instr, kGrainWork, [&](int64_t q0, int64_t q1) {
    validate_program(ip, q1, tc.data_ptr<int32_t>(), tc.numel(), coefs.numel(), in_numel,
                     out_numel, ws_numel, q0);
  });
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "linear_program_cpu", [&] {
    const auto cc = coefs.contiguous().to(xc.scalar_type());
    const scalar_t* cp = cc.data_ptr<scalar_t>();
    const int32_t* tp = tc.data_ptr<int32_t>();
    const scalar_t* xp = xc.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    // Workspaces are not zero-filled (programs write before they read, as on CUDA): for a
    // large plane the fill was a serial pass as long as a fifth of the program.
    const auto new_ws = [&] { return std::unique_ptr<scalar_t[]>(new scalar_t[ws_numel + 1]); };
    if (split) {
      const auto ws = new_ws();
      for (int64_t p = 0; p < planes; ++p) {
        PlaneSpaces<scalar_t> sp{xp + p * in_numel, op + p * out_numel, ws.get()};
        run_plane<scalar_t>(ip, n_instr, tp, cp, sp, /*split=*/true);
      }
      return;
    }
    at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
      const auto ws = new_ws();
      for (int64_t p = begin; p < end; ++p) {
        PlaneSpaces<scalar_t> sp{xp + p * in_numel, op + p * out_numel, ws.get()};
        run_plane<scalar_t>(ip, n_instr, tp, cp, sp, /*split=*/false);
      }
    });
  });
  return out;
}

}  // namespace
}  // namespace linprog
}  // namespace sstkd

TORCH_LIBRARY_IMPL(sstkd_ops, CPU, m) {
  m.impl("linear_program", &sstkd::linprog::linear_program_cpu);
}

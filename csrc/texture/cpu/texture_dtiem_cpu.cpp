// C++ CPU kernels of the DTIEM ops texstat_dtiem(_backward) (schemas in
// csrc/texture/texture_stats.cpp; shared helpers in texture_stats_cpu.h): Lloyd-Max levels, hat code,
// clip-and-redistribute, CDF equalisation and co-occurrence per offset.
//
// Nothing of size N * H * W is ever allocated: every pass works pixel by pixel on the scalar
// texture intensity s (B, H, W), where a pixel has at most two non-zero codes. Reductions over
// pixels are sequential per image, so the results do not depend on the number of threads:
// bitwise reproducible run to run.
//
// Importance weights (optional): a pixel's codes count with its weight a_p in the histogram
// (normalised by sum_p a_p instead of P) and, as the first pixel of a pair, in the
// co-occurrence (normalised by the weight sum of the pairs); a_p = 1 without weights or for an
// image whose weights sum to zero, which gives exactly the unweighted arithmetic (x * 1.0 is
// x, and the weight sums are then the pixel and pair counts).
#include "texture_stats_cpu.h"

#include "../texture_stats_math.h"
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <optional>
#include <tuple>
#include <vector>

namespace sstkd { namespace texture { namespace cpu {
namespace {

using namespace ::sstkd::texture::math;  // NOLINT: the shared per-value rules
using namespace detail;              // NOLINT: the shared CPU helpers (texture_stats_cpu.h)

using at::Tensor;

// The CPU kernels take any number of offsets (the CUDA kernels at most 8).
constexpr size_t kMaxOffsetPairs = std::numeric_limits<size_t>::max() / 2;

// ----------------------------------------------------------------------------------- DTIEM

template <typename T>
void denoise(const T* h, int64_t N, double theta, T* hd, int64_t& amax, T& c) {
  amax = 0;
  for (int64_t n = 1; n < N; ++n)
    if (h[n] > h[amax]) amax = n;
  c = static_cast<T>(theta) * h[amax];
  T excess = 0;
  for (int64_t n = 0; n < N; ++n)
    if (h[n] > c) excess += h[n] - c;
  for (int64_t n = 0; n < N; ++n) hd[n] = (h[n] > c ? c : h[n]) + excess / static_cast<T>(N);
}

// The importance weights of image b ((P) values; checked >= 0 and finite) and their sum
// wsum, or nullptr (uniform weights, wsum = P) without weights or when they sum to zero.
template <typename T>
const T* image_weights(const Tensor& w, int64_t b, int64_t P, const char* fn, double& wsum) {
  wsum = double(P);
  if (!w.defined()) return nullptr;
  const T* a = w.data_ptr<T>() + b * P;
  double sum = 0;
  for (int64_t p = 0; p < P; ++p) {
    TORCH_CHECK(std::isfinite(a[p]) && a[p] >= T(0), fn, ": argument 'weights' expected finite "
                "values >= 0, got ", a[p], " in image ", b);
    sum += double(a[p]);
  }
  if (!(sum > 0)) return nullptr;
  wsum = sum;
  return a;
}

// Sum of the weights of the first pixels of the pairs of offset (dy, dx) (the pair count with
// a == nullptr), in raster order.
template <typename T>
double pair_weight(const T* a, int64_t H, int64_t W, int64_t dy, int64_t dx) {
  const int64_t hh = H - std::abs(dy), ww = W - std::abs(dx);
  if (hh <= 0 || ww <= 0) return 0.0;
  if (a == nullptr) return double(hh * ww);
  const int64_t y0 = std::max<int64_t>(0, -dy), x0 = std::max<int64_t>(0, -dx);
  double sum = 0;
  for (int64_t y = y0; y < y0 + hh; ++y)
    for (int64_t x = x0; x < x0 + ww; ++x) sum += double(a[y * W + x]);
  return sum;
}

template <typename T>
void cdf_of(const T* hd, int64_t N, T* cdf) {
  T run = 0;
  for (int64_t n = 0; n < N; ++n) {
    run += hd[n];
    cdf[n] = run - hd[n] / T(2);
  }
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> dtiem_cpu(
    const Tensor& s_, int64_t N, int64_t iters, double theta, at::IntArrayRef offsets,
    const std::optional<Tensor>& weights) {
  constexpr const char* fn = "texstat_dtiem";
  dtiem_args(s_, N, iters, theta, offsets, weights, kMaxOffsetPairs, fn, /*cuda=*/false);
  const Tensor s = s_.contiguous();
  const Tensor wts = weights.has_value() ? weights->contiguous() : Tensor();
  const int64_t B = s.size(0), H = s.size(1), W = s.size(2), P = H * W;
  const int64_t D = static_cast<int64_t>(offsets.size()) / 2;
  Tensor Qm = at::empty({B, H, W}, s.options());
  Tensor cooc = at::empty({B, D, N, N}, s.options());
  Tensor hist = at::empty({B, N}, s.options());
  Tensor levels = at::empty({B, N}, s.options());
  Tensor raw = at::empty({B, N}, s.options());
  Tensor kbuf = at::empty({B, P}, s.options().dtype(at::kLong));
  Tensor wbuf = at::empty({B, P}, s.options());
  Tensor macc = at::empty({B, N * N}, s.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "texstat_dtiem_cpu", [&] {
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<double> sums(N);
      std::vector<int64_t> cnt(N);
      std::vector<scalar_t> cdf(N);
      for (int64_t b = b0; b < b1; ++b) {
        const scalar_t* S = s.data_ptr<scalar_t>() + b * P;
        check_finite_row(S, P, fn);
        double wsum;
        const scalar_t* A = image_weights<scalar_t>(wts, b, P, fn, wsum);
        scalar_t lo = S[0], hi = S[0];
        for (int64_t p = 1; p < P; ++p) {
          lo = std::min(lo, S[p]);
          hi = std::max(hi, S[p]);
        }
        scalar_t* lv = levels.data_ptr<scalar_t>() + b * N;
        for (int64_t k = 0; k < N; ++k) lv[k] = static_cast<scalar_t>(level_frac(k, N)) * (hi - lo) + lo;
        for (int64_t it = 0; it < iters; ++it) {  // Lloyd-Max steps
          std::fill(sums.begin(), sums.end(), 0.0);
          std::fill(cnt.begin(), cnt.end(), 0);
          for (int64_t p = 0; p < P; ++p) {
            const int64_t k = nearest_level(S[p], lv, N);
            sums[k] += S[p];
            cnt[k] += 1;
          }
          for (int64_t k = 0; k < N; ++k)
            if (cnt[k] > 0) lv[k] = static_cast<scalar_t>(sums[k] / double(cnt[k]));
        }
        int64_t* kb = kbuf.data_ptr<int64_t>() + b * P;
        scalar_t* wb = wbuf.data_ptr<scalar_t>() + b * P;
        std::fill(sums.begin(), sums.end(), 0.0);
        for (int64_t p = 0; p < P; ++p) {
          const double a = A != nullptr ? double(A[p]) : 1.0;
          if (N == 1) {
            kb[p] = 0;
            wb[p] = 0;
            sums[0] += a;
            continue;
          }
          bool inside;
          hat_code(S[p], lv, N, kb[p], wb[p], inside);
          sums[kb[p]] += a * double(scalar_t(1) - wb[p]);
          sums[kb[p] + 1] += a * double(wb[p]);
        }
        scalar_t* rh = raw.data_ptr<scalar_t>() + b * N;
        scalar_t* hd = hist.data_ptr<scalar_t>() + b * N;
        for (int64_t n = 0; n < N; ++n) rh[n] = static_cast<scalar_t>(sums[n] / wsum);
        int64_t amax;
        scalar_t c;
        denoise(rh, N, theta, hd, amax, c);
        cdf_of(hd, N, cdf.data());
        scalar_t* q = Qm.data_ptr<scalar_t>() + b * P;
        for (int64_t p = 0; p < P; ++p)
          q[p] = N == 1 ? cdf[0] : (scalar_t(1) - wb[p]) * cdf[kb[p]] + wb[p] * cdf[kb[p] + 1];
        double* M = macc.data_ptr<double>() + b * N * N;
        for (int64_t d = 0; d < D; ++d) {
          const int64_t dy = offsets[2 * d], dx = offsets[2 * d + 1];
          const int64_t hh = H - std::abs(dy), ww = W - std::abs(dx);
          scalar_t* out = cooc.data_ptr<scalar_t>() + (b * D + d) * N * N;
          std::fill(M, M + N * N, 0.0);
          const double pw = pair_weight(A, H, W, dy, dx);
          if (pw > 0) {
            const int64_t y0 = std::max<int64_t>(0, -dy), x0 = std::max<int64_t>(0, -dx);
            for (int64_t y = y0; y < y0 + hh; ++y)
              for (int64_t x = x0; x < x0 + ww; ++x) {
                const int64_t i = y * W + x, j = (y + dy) * W + (x + dx);
                const double a = A != nullptr ? double(A[i]) : 1.0;
                if (N == 1) {
                  M[0] += a;
                  continue;
                }
                const int64_t ki = kb[i], kj = kb[j];
                const double ai[2] = {a * double(scalar_t(1) - wb[i]), a * double(wb[i])};
                const double aj[2] = {double(scalar_t(1) - wb[j]), double(wb[j])};
                for (int u = 0; u < 2; ++u)
                  for (int v = 0; v < 2; ++v) M[(ki + u) * N + kj + v] += ai[u] * aj[v];
              }
            for (int64_t e = 0; e < N * N; ++e) out[e] = static_cast<scalar_t>(M[e] / pw);
          } else {  // no pair, or pairs of zero weight
            std::fill(out, out + N * N, scalar_t(0));
          }
        }
      }
    });
  });
  return {Qm, cooc, hist, levels, raw};
}

Tensor dtiem_backward_cpu(const Tensor& grad_q_, const Tensor& grad_cooc_,
                          const Tensor& grad_hist_, const Tensor& s_, const Tensor& levels_,
                          const Tensor& raw_, double theta, at::IntArrayRef offsets,
                          const std::optional<Tensor>& weights) {
  constexpr const char* fn = "texstat_dtiem_backward";
  dtiem_backward_args(grad_q_, grad_cooc_, grad_hist_, s_, levels_, raw_, theta, offsets,
                      weights, kMaxOffsetPairs, fn, /*cuda=*/false);
  const Tensor wts = weights.has_value() ? weights->contiguous() : Tensor();
  const Tensor s = s_.contiguous(), levels = levels_.contiguous(), raw = raw_.contiguous();
  const Tensor gq = grad_q_.contiguous(), gm = grad_cooc_.contiguous();
  const Tensor gh = grad_hist_.contiguous();
  const int64_t B = s.size(0), H = s.size(1), W = s.size(2), P = H * W, N = levels.size(1);
  const int64_t D = static_cast<int64_t>(offsets.size()) / 2;
  Tensor grad_s = at::zeros_like(s);
  if (N == 1) return grad_s;  // one level: every code is the constant 1
  Tensor kbuf = at::empty({B, P}, s.options().dtype(at::kLong));
  Tensor wbuf = at::empty({B, P}, s.options());
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "texstat_dtiem_backward_cpu", [&] {
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<double> dcdf(N), dh(N), inv(D);
      std::vector<scalar_t> hd(N), cdf(N);
      for (int64_t b = b0; b < b1; ++b) {
        const scalar_t* S = s.data_ptr<scalar_t>() + b * P;
        const scalar_t* lv = levels.data_ptr<scalar_t>() + b * N;
        const scalar_t* rh = raw.data_ptr<scalar_t>() + b * N;
        const scalar_t* dQ = gq.data_ptr<scalar_t>() + b * P;
        const scalar_t* dM = gm.data_ptr<scalar_t>() + b * D * N * N;
        const scalar_t* dH = gh.data_ptr<scalar_t>() + b * N;
        int64_t* kb = kbuf.data_ptr<int64_t>() + b * P;
        scalar_t* wb = wbuf.data_ptr<scalar_t>() + b * P;
        // the forward's weights and weight sums (same order: the same values)
        double wsum;
        const scalar_t* A = image_weights<scalar_t>(wts, b, P, fn, wsum);
        for (int64_t d = 0; d < D; ++d) {
          const double pw = pair_weight(A, H, W, offsets[2 * d], offsets[2 * d + 1]);
          inv[d] = pw > 0 ? 1.0 / pw : 0.0;
        }
        // reduction pass: d CDF_n = sum_p dQ_p E_n(p)
        std::fill(dcdf.begin(), dcdf.end(), 0.0);
        for (int64_t p = 0; p < P; ++p) {
          bool inside;
          hat_code(S[p], lv, N, kb[p], wb[p], inside);
          dcdf[kb[p]] += double(dQ[p]) * double(scalar_t(1) - wb[p]);
          dcdf[kb[p] + 1] += double(dQ[p]) * double(wb[p]);
        }
        int64_t amax;
        scalar_t c;
        denoise(rh, N, theta, hd.data(), amax, c);
        cdf_of(hd.data(), N, cdf.data());
        // d hist' = grad_hist + d(cumsum - hd / 2)
        double suffix = 0, total = 0, dclip = 0;
        int64_t nover = 0;
        for (int64_t n = N - 1; n >= 0; --n) {
          suffix += dcdf[n];
          dh[n] = double(dH[n]) + suffix - dcdf[n] / 2;
          total += dh[n];
        }
        // through the clip-and-redistribute
        for (int64_t n = 0; n < N; ++n) {
          if (rh[n] > c) {  // clipped: value c + excess / N, excess grows with h_n
            dclip += dh[n];
            ++nover;
            dh[n] = total / double(N);
          }
        }
        dclip -= double(nover) / double(N) * total;
        dh[amax] += theta * dclip;
        // per-pixel pass
        scalar_t* ds = grad_s.data_ptr<scalar_t>() + b * P;
        for (int64_t y = 0; y < H; ++y)
          for (int64_t x = 0; x < W; ++x) {
            const int64_t p = y * W + x, k = kb[p];
            const int64_t j = last_le(lv, N, S[p]);
            if (j < 0 || j > N - 2) continue;  // clamped: no gradient
            const double ap = A != nullptr ? double(A[p]) : 1.0;
            double dE0 = double(dQ[p]) * double(cdf[k]) + dh[k] * ap / wsum;
            double dE1 = double(dQ[p]) * double(cdf[k + 1]) + dh[k + 1] * ap / wsum;
            for (int64_t d = 0; d < D; ++d) {
              if (!(inv[d] > 0)) continue;  // no pair (or pairs of zero weight)
              const int64_t dy = offsets[2 * d], dx = offsets[2 * d + 1];
              const scalar_t* G = dM + d * N * N;
              const int64_t yn = y + dy, xn = x + dx, yp = y - dy, xp = x - dx;
              if (yn >= 0 && yn < H && xn >= 0 && xn < W) {  // p is the first of a pair
                const int64_t q = yn * W + xn, kq = kb[q];
                const double a0 = double(scalar_t(1) - wb[q]), a1 = double(wb[q]);
                const double f = ap * inv[d];
                dE0 += (G[k * N + kq] * a0 + G[k * N + kq + 1] * a1) * f;
                dE1 += (G[(k + 1) * N + kq] * a0 + G[(k + 1) * N + kq + 1] * a1) * f;
              }
              if (yp >= 0 && yp < H && xp >= 0 && xp < W) {  // p is the second of a pair
                const int64_t q = yp * W + xp, kq = kb[q];
                const double a0 = double(scalar_t(1) - wb[q]), a1 = double(wb[q]);
                const double f = (A != nullptr ? double(A[q]) : 1.0) * inv[d];
                dE0 += (a0 * G[kq * N + k] + a1 * G[(kq + 1) * N + k]) * f;
                dE1 += (a0 * G[kq * N + k + 1] + a1 * G[(kq + 1) * N + k + 1]) * f;
              }
            }
            ds[p] = static_cast<scalar_t>((dE1 - dE0) / double(lv[k + 1] - lv[k]));
          }
      }
    });
  });
  return grad_s;
}

}  // namespace
}  // namespace cpu
}  // namespace texture
}  // namespace sstkd

TORCH_LIBRARY_IMPL(sstkd_ops, CPU, m) {
  m.impl("texstat_dtiem", &sstkd::texture::cpu::dtiem_cpu);
  m.impl("texstat_dtiem_backward", &sstkd::texture::cpu::dtiem_backward_cpu);
}

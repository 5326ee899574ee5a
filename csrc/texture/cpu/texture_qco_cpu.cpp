// C++ CPU kernels of the STLNet QCO ops texstat_qco(_backward) (1-D and 2-D) and of the
// TEM product texstat_qco_tem(_backward) (schemas in csrc/texture/texture_stats.cpp; shared helpers in
// texture_stats_cpu.h).
//
// Nothing of size N * H * W is ever allocated: every pass works pixel by pixel on the scalar
// texture intensity s, where a pixel has at most two non-zero codes. Reductions over pixels are
// sequential per group (or per fixed-size chunk, reduced in chunk order), so the results do
// not depend on the number of threads: bitwise reproducible run to run.
#include "texture_stats_cpu.h"

#include "../texture_stats_math.h"
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

namespace sstkd { namespace texture { namespace cpu {
namespace {

using namespace ::sstkd::texture::math;  // NOLINT: the shared per-value rules
using namespace detail;              // NOLINT: the shared CPU helpers (texture_stats_cpu.h)

using at::Tensor;

// ---------------------------------------------------------------- STLNet QCO (1-D / 2-D)

std::tuple<Tensor, Tensor, Tensor, Tensor> qco_cpu(const Tensor& s_, int64_t L, bool cooc) {
  qco_args(s_, L, "texstat_qco", /*cuda=*/false);
  const Tensor s = s_.contiguous();
  const int64_t Gn = s.size(0), h = s.size(1), w = s.size(2), P = h * w;
  Tensor levels = at::empty({Gn, L}, s.options());
  Tensor counts = cooc ? at::empty({Gn, L, L}, s.options()) : at::empty({Gn, L}, s.options());
  Tensor sta = at::empty_like(counts);
  Tensor extrema = at::empty({Gn, 2}, s.options().dtype(at::kLong));
  const int64_t K = cooc ? L * L : L;
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "texstat_qco_cpu", [&] {
    const scalar_t* Sall = s.data_ptr<scalar_t>();
    scalar_t* Q = levels.data_ptr<scalar_t>();
    scalar_t* CN = counts.data_ptr<scalar_t>();
    scalar_t* ST = sta.data_ptr<scalar_t>();
    int64_t* EX = extrema.data_ptr<int64_t>();
    at::parallel_for(0, Gn, 1, [&](int64_t g0, int64_t g1) {
      std::vector<double> acc(K);
      int ka[kMaxCodes], kb[kMaxCodes];
      scalar_t ra[kMaxCodes], rb[kMaxCodes];
      for (int64_t g = g0; g < g1; ++g) {
        const scalar_t* S = Sall + g * P;
        check_finite_row(S, P, "texstat_qco");
        int64_t imin = 0, imax = 0;
        for (int64_t p = 1; p < P; ++p) {
          if (S[p] < S[imin]) imin = p;
          if (S[p] > S[imax]) imax = p;
        }
        const scalar_t lo = S[imin], hi = S[imax];
        EX[2 * g] = imin;
        EX[2 * g + 1] = imax;
        scalar_t* q = Q + g * L;
        for (int64_t k = 0; k < L; ++k) q[k] = static_cast<scalar_t>(level_frac(k, L)) * (hi - lo) + lo;
        const scalar_t delta = L > 1 ? q[1] - q[0] : hi - lo;
        std::fill(acc.begin(), acc.end(), 0.0);
        if (!cooc) {
          for (int64_t p = 0; p < P; ++p) {
            const int n = stl_codes(S[p], q, L, delta, ka, ra);
            for (int m = 0; m < n; ++m) acc[ka[m]] += ra[m];
          }
        } else {
          for (int64_t y = 0; y + 1 < h; ++y)
            for (int64_t x = 0; x + 1 < w; ++x) {
              const int na = stl_codes(S[y * w + x], q, L, delta, ka, ra);
              if (na == 0) continue;
              const int nb = stl_codes(S[(y + 1) * w + x + 1], q, L, delta, kb, rb);
              for (int i = 0; i < na; ++i)
                for (int j = 0; j < nb; ++j) acc[ka[i] * L + kb[j]] += double(ra[i]) * double(rb[j]);
            }
        }
        double total = 0;
        for (int64_t k = 0; k < K; ++k) total += acc[k];
        if (cooc) total += kQco2dEps;
        for (int64_t k = 0; k < K; ++k) {
          CN[g * K + k] = static_cast<scalar_t>(acc[k]);
          ST[g * K + k] = static_cast<scalar_t>(acc[k] / total);  // 1-D: NaN when total == 0
        }
      }
    });
  });
  return {levels, sta, counts, extrema};
}

Tensor qco_backward_cpu(const Tensor& grad_levels_, const Tensor& grad_sta_, const Tensor& s_,
                        const Tensor& levels_, const Tensor& counts_, const Tensor& extrema_,
                        bool cooc) {
  constexpr const char* fn = "texstat_qco_backward";
  qco_backward_args(grad_levels_, grad_sta_, s_, levels_, counts_, extrema_, cooc, fn, false);
  const Tensor s = s_.contiguous(), levels = levels_.contiguous(), counts = counts_.contiguous();
  const Tensor gl = grad_levels_.contiguous(), gs = grad_sta_.contiguous();
  const Tensor extrema = extrema_.contiguous();
  const int64_t Gn = s.size(0), h = s.size(1), w = s.size(2), P = h * w, L = levels.size(1);
  const int64_t K = cooc ? L * L : L;
  {  // the extrema index pixels of their group (host memory: no device sync)
    const int64_t* EX = extrema.data_ptr<int64_t>();
    for (int64_t i = 0; i < 2 * Gn; ++i)
      TORCH_CHECK(EX[i] >= 0 && EX[i] < P, fn, ": argument 'extrema' expected pixel indices in "
                  "[0, ", P, "), got ", EX[i], " at group ", i / 2);
  }
  Tensor grad_s = at::empty_like(s);
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "texstat_qco_backward_cpu", [&] {
    const scalar_t* Sall = s.data_ptr<scalar_t>();
    const scalar_t* Q = levels.data_ptr<scalar_t>();
    const scalar_t* CN = counts.data_ptr<scalar_t>();
    const scalar_t* GL = gl.data_ptr<scalar_t>();
    const scalar_t* GS = gs.data_ptr<scalar_t>();
    const int64_t* EX = extrema.data_ptr<int64_t>();
    scalar_t* DS = grad_s.data_ptr<scalar_t>();
    at::parallel_for(0, Gn, 1, [&](int64_t g0, int64_t g1) {
      std::vector<double> dc(K), dq(L);
      int kk[kMaxCodes];
      double contrib[kMaxCodes];
      for (int64_t g = g0; g < g1; ++g) {
        const scalar_t* S = Sall + g * P;
        const scalar_t* q = Q + g * L;
        scalar_t* ds = DS + g * P;
        const int64_t imin = EX[2 * g], imax = EX[2 * g + 1];
        const scalar_t delta = L > 1 ? q[1] - q[0] : S[imax] - S[imin];
        double total = 0, dot = 0;
        bool any = false;
        for (int64_t k = 0; k < K; ++k) total += CN[g * K + k];
        if (cooc) total += kQco2dEps;
        for (int64_t k = 0; k < K; ++k) {
          dot += double(GS[g * K + k]) * (double(CN[g * K + k]) / total);
          any = any || GS[g * K + k] != scalar_t(0);
        }
        if (!cooc && total == 0 && any) {  // sta = 0/0: the official gradient is NaN
          std::fill(ds, ds + P, std::numeric_limits<scalar_t>::quiet_NaN());
          continue;
        }
        for (int64_t k = 0; k < K; ++k) dc[k] = any ? (double(GS[g * K + k]) - dot) / total : 0.0;
        std::fill(dq.begin(), dq.end(), 0.0);
        for (int64_t p = 0; p < P; ++p) {
          const int n = qco_pixel_grad(S, p, h, w, q, L, delta, dc.data(), cooc, kk, contrib);
          double acc = 0;
          for (int m = 0; m < n; ++m) {
            acc += contrib[m];
            dq[kk[m]] -= contrib[m];
          }
          ds[p] = static_cast<scalar_t>(acc);
        }
        double dlo = 0, dhi = 0;
        for (int64_t k = 0; k < L; ++k) {
          const double d = dq[k] + double(GL[g * L + k]);
          const double f = static_cast<scalar_t>(level_frac(k, L));
          dhi += d * f;
          dlo += d - d * f;
        }
        ds[imin] += static_cast<scalar_t>(dlo);
        ds[imax] += static_cast<scalar_t>(dhi);
      }
    });
  });
  return grad_s;
}

// ------------------------------------------------------------------------ TEM product

// STLNet codes of every pixel: ks (B, P, kMaxCodes) int32 (-1: none), rs the weights.
template <typename T>
void tem_codes(const T* S, const T* Q, const T* DL, int64_t B, int64_t P, int64_t L, int* ks,
               T* rs) {
  at::parallel_for(0, B * P, 4096, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / P;
      TORCH_CHECK(std::isfinite(S[i]), "texstat_qco_tem: cos_sim holds NaN or Inf");
      const int n = stl_codes(S[i], Q + b * L, L, DL[b], ks + i * kMaxCodes, rs + i * kMaxCodes);
      for (int m = n; m < kMaxCodes; ++m) {
        ks[i * kMaxCodes + m] = -1;
        rs[i * kMaxCodes + m] = T(0);
      }
    }
  });
}

Tensor qco_tem_cpu(const Tensor& f_, const Tensor& s_, const Tensor& levels_,
                   const Tensor& delta_) {
  qco_tem_args(nullptr, f_, s_, levels_, delta_, "texstat_qco_tem", /*cuda=*/false);
  const Tensor f = f_.contiguous(), s = s_.contiguous();
  const Tensor levels = levels_.contiguous(), delta = delta_.contiguous();
  const int64_t B = f.size(0), C = f.size(1), L = f.size(2), P = s.size(1);
  Tensor out = at::empty({B, C, P}, f.options());
  Tensor ks = at::empty({B, P, kMaxCodes}, f.options().dtype(at::kInt));
  Tensor rs = at::empty({B, P, kMaxCodes}, f.options());
  AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "texstat_qco_tem_cpu", [&] {
    const scalar_t* F = f.data_ptr<scalar_t>();
    int* K = ks.data_ptr<int>();
    scalar_t* R = rs.data_ptr<scalar_t>();
    tem_codes(s.data_ptr<scalar_t>(), levels.data_ptr<scalar_t>(), delta.data_ptr<scalar_t>(), B,
              P, L, K, R);
    scalar_t* O = out.data_ptr<scalar_t>();
    at::parallel_for(0, B * C, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / C;
        const scalar_t* fr = F + r * L;
        for (int64_t p = 0; p < P; ++p) {
          const int* k = K + (b * P + p) * kMaxCodes;
          const scalar_t* rw = R + (b * P + p) * kMaxCodes;
          scalar_t acc = 0;
          for (int m = 0; m < kMaxCodes && k[m] >= 0; ++m) acc += fr[k[m]] * rw[m];
          O[r * P + p] = acc;
        }
      }
    });
  });
  return out;
}

std::tuple<Tensor, Tensor, Tensor> qco_tem_backward_cpu(const Tensor& grad_out_, const Tensor& f_,
                                                        const Tensor& s_, const Tensor& levels_,
                                                        const Tensor& delta_) {
  qco_tem_args(&grad_out_, f_, s_, levels_, delta_, "texstat_qco_tem_backward", false);
  const Tensor f = f_.contiguous(), go = grad_out_.contiguous(), s = s_.contiguous();
  const Tensor levels = levels_.contiguous(), delta = delta_.contiguous();
  const int64_t B = f.size(0), C = f.size(1), L = f.size(2), P = s.size(1);
  const int64_t nch = (P + kChunk - 1) / kChunk;
  Tensor grad_f = at::empty_like(f);
  Tensor grad_s = at::empty({B, P}, f.options());
  Tensor dq_part = at::zeros({B, nch, L}, f.options().dtype(at::kDouble));
  Tensor ks = at::empty({B, P, kMaxCodes}, f.options().dtype(at::kInt));
  Tensor rs = at::empty({B, P, kMaxCodes}, f.options());
  AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "texstat_qco_tem_backward_cpu", [&] {
    const scalar_t* F = f.data_ptr<scalar_t>();
    const scalar_t* GO = go.data_ptr<scalar_t>();
    const scalar_t* S = s.data_ptr<scalar_t>();
    const scalar_t* Q = levels.data_ptr<scalar_t>();
    int* K = ks.data_ptr<int>();
    scalar_t* R = rs.data_ptr<scalar_t>();
    tem_codes(S, Q, delta.data_ptr<scalar_t>(), B, P, L, K, R);
    // grad f[b, c, k] = sum_p grad_out[b, c, p] E_k(p): one row per work item
    scalar_t* GF = grad_f.data_ptr<scalar_t>();
    at::parallel_for(0, B * C, 1, [&](int64_t r0, int64_t r1) {
      std::vector<double> acc(L);
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / C;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t p = 0; p < P; ++p) {
          const int* k = K + (b * P + p) * kMaxCodes;
          const scalar_t* rw = R + (b * P + p) * kMaxCodes;
          const double gv = GO[r * P + p];
          for (int m = 0; m < kMaxCodes && k[m] >= 0; ++m) acc[k[m]] += gv * double(rw[m]);
        }
        for (int64_t k = 0; k < L; ++k) GF[r * L + k] = static_cast<scalar_t>(acc[k]);
      }
    });
    // grad s and per-chunk partial grad levels (reduced in chunk order below)
    scalar_t* GSp = grad_s.data_ptr<scalar_t>();
    double* DQ = dq_part.data_ptr<double>();
    at::parallel_for(0, B * nch, 1, [&](int64_t t0, int64_t t1) {
      std::vector<double> gsum(kChunk * kMaxCodes);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t b = t / nch, p0 = (t % nch) * kChunk, n = std::min(kChunk, P - p0);
        std::fill(gsum.begin(), gsum.end(), 0.0);
        const int* k = K + (b * P + p0) * kMaxCodes;
        for (int64_t c = 0; c < C; ++c) {
          const scalar_t* fr = F + (b * C + c) * L;
          const scalar_t* gr = GO + (b * C + c) * P + p0;
          for (int64_t j = 0; j < n; ++j)
            for (int m = 0; m < kMaxCodes && k[j * kMaxCodes + m] >= 0; ++m)
              gsum[j * kMaxCodes + m] += double(fr[k[j * kMaxCodes + m]]) * double(gr[j]);
        }
        for (int64_t j = 0; j < n; ++j) {
          double acc = 0;
          for (int m = 0; m < kMaxCodes && k[j * kMaxCodes + m] >= 0; ++m) {
            const int km = k[j * kMaxCodes + m];
            const double sg = sign_of(Q[b * L + km] - S[b * P + p0 + j]);
            acc += gsum[j * kMaxCodes + m] * sg;
            DQ[t * L + km] -= gsum[j * kMaxCodes + m] * sg;
          }
          GSp[b * P + p0 + j] = static_cast<scalar_t>(acc);
        }
      }
    });
  });
  Tensor grad_levels = dq_part.sum(1).to(f.scalar_type());  // fixed-order reduction
  return {grad_f, grad_s, grad_levels};
}

}  // namespace
}  // namespace cpu
}  // namespace texture
}  // namespace sstkd

TORCH_LIBRARY_IMPL(sstkd_ops, CPU, m) {
  m.impl("texstat_qco", &sstkd::texture::cpu::qco_cpu);
  m.impl("texstat_qco_backward", &sstkd::texture::cpu::qco_backward_cpu);
  m.impl("texstat_qco_tem", &sstkd::texture::cpu::qco_tem_cpu);
  m.impl("texstat_qco_tem_backward", &sstkd::texture::cpu::qco_tem_backward_cpu);
}

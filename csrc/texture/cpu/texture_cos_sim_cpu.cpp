// C++ CPU kernels of the cosine-similarity ops texstat_cos_sim(_backward) (schemas in
// csrc/texture/texture_stats.cpp; shared helpers in texture_stats_cpu.h): the texture intensity
// s (B, H, W), the cosine similarity of every pixel's feature vector with the unit mean of its
// cell, and its gradient with respect to x.
//
// Reductions over pixels are sequential per row (or per fixed-size chunk, reduced in chunk
// order), so the results do not depend on the number of threads: bitwise reproducible run to
// run.
#include "texture_stats_cpu.h"

#include "../texture_stats_math.h"
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

namespace sstkd { namespace texture { namespace cpu {
namespace {

using namespace ::sstkd::texture::math;  // NOLINT: the shared per-value rules
using namespace detail;              // NOLINT: the shared CPU helpers (texture_stats_cpu.h)

using at::Tensor;

// --------------------------------------------------------------------- cosine similarity

// sum_i x[i] (* w[i]) in double, with 4 independent accumulators (a fixed order).
template <typename T>
inline double sum_row(const T* x, const T* w, int64_t n) {
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  int64_t i = 0;
  if (w == nullptr) {
    for (; i + 4 <= n; i += 4) {
      a0 += x[i];
      a1 += x[i + 1];
      a2 += x[i + 2];
      a3 += x[i + 3];
    }
    for (; i < n; ++i) a0 += x[i];
  } else {
    for (; i + 4 <= n; i += 4) {
      a0 += double(x[i]) * double(w[i]);
      a1 += double(x[i + 1]) * double(w[i + 1]);
      a2 += double(x[i + 2]) * double(w[i + 2]);
      a3 += double(x[i + 3]) * double(w[i + 3]);
    }
    for (; i < n; ++i) a0 += double(x[i]) * double(w[i]);
  }
  return (a0 + a1) + (a2 + a3);
}

std::tuple<Tensor, Tensor, Tensor, Tensor> cos_sim_cpu(const Tensor& x_, int64_t cells) {
  cos_sim_args(x_, cells, "texstat_cos_sim", /*cuda=*/false);
  const Tensor x = x_.contiguous();
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), S = cells;
  const int64_t P = H * W, G = S * S, h = H / S, w = W / S;
  Tensor s = at::empty({B, H, W}, x.options());
  Tensor pnorm = at::empty({B, H, W}, x.options());
  Tensor gunit = at::empty({B, G, C}, x.options());
  Tensor gnorm = at::empty({B, G}, x.options());
  Tensor means = at::empty({B, C, G}, x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "texstat_cos_sim_cpu", [&] {
    const scalar_t* X = x.data_ptr<scalar_t>();
    double* M = means.data_ptr<double>();
    at::parallel_for(0, B * C, 1, [&](int64_t r0, int64_t r1) {
      std::vector<double> acc(G);
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* row = X + r * P;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t y = 0; y < H; ++y)
          for (int64_t cx = 0; cx < S; ++cx)
            acc[(y / h) * S + cx] +=
                sum_row(row + y * W + cx * w, static_cast<const scalar_t*>(nullptr), w);
        for (int64_t g = 0; g < G; ++g) M[r * G + g] = acc[g] / double(h * w);
      }
    });
    scalar_t* GU = gunit.data_ptr<scalar_t>();
    scalar_t* GN = gnorm.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t g = 0; g < G; ++g) {
        double n2 = 0;
        for (int64_t c = 0; c < C; ++c) n2 += M[(b * C + c) * G + g] * M[(b * C + c) * G + g];
        const double n = std::sqrt(n2);
        GN[b * G + g] = static_cast<scalar_t>(n);
        for (int64_t c = 0; c < C; ++c)
          GU[(b * G + g) * C + c] =
              static_cast<scalar_t>(M[(b * C + c) * G + g] / std::max(n, kNormEps));
      }
    scalar_t* Sp = s.data_ptr<scalar_t>();
    scalar_t* PN = pnorm.data_ptr<scalar_t>();
    const int64_t nch = (P + kChunk - 1) / kChunk;
    at::parallel_for(0, B * nch, 1, [&](int64_t t0, int64_t t1) {
      std::vector<scalar_t> dot(kChunk), nrm(kChunk);
      std::vector<int64_t> cell(kChunk);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t b = t / nch, p0 = (t % nch) * kChunk, n = std::min(kChunk, P - p0);
        std::fill(dot.begin(), dot.end(), scalar_t(0));
        std::fill(nrm.begin(), nrm.end(), scalar_t(0));
        for (int64_t j = 0; j < n; ++j) cell[j] = ((p0 + j) / W / h) * S + ((p0 + j) % W) / w;
        for (int64_t c = 0; c < C; ++c) {
          const scalar_t* row = X + (b * C + c) * P + p0;
          if (G == 1) {
            const scalar_t gc = GU[b * C + c];
            for (int64_t j = 0; j < n; ++j) {
              dot[j] += row[j] * gc;
              nrm[j] += row[j] * row[j];
            }
          } else {
            for (int64_t j = 0; j < n; ++j) {
              dot[j] += row[j] * GU[(b * G + cell[j]) * C + c];
              nrm[j] += row[j] * row[j];
            }
          }
        }
        for (int64_t j = 0; j < n; ++j) {
          const scalar_t nv = std::sqrt(nrm[j]);
          PN[b * P + p0 + j] = nv;
          Sp[b * P + p0 + j] = dot[j] / std::max(nv, static_cast<scalar_t>(kNormEps));
        }
      }
    });
  });
  return {s, pnorm, gunit, gnorm};
}

Tensor cos_sim_backward_cpu(const Tensor& grad_s_, const Tensor& x_, const Tensor& s_,
                            const Tensor& pnorm_, const Tensor& gunit_, const Tensor& gnorm_,
                            int64_t cells) {
  cos_sim_backward_args(grad_s_, x_, s_, pnorm_, gunit_, gnorm_, cells,
                        "texstat_cos_sim_backward", /*cuda=*/false);
  const Tensor x = x_.contiguous(), ds = grad_s_.contiguous();
  const Tensor s = s_.contiguous(), pnorm = pnorm_.contiguous();
  const Tensor gunit = gunit_.contiguous(), gnorm = gnorm_.contiguous();
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), S = cells;
  const int64_t P = H * W, G = S * S, h = H / S, w = W / S;
  Tensor grad_x = at::empty_like(x);
  Tensor coef = at::empty({2, B, P}, x.options());
  Tensor dgc = at::empty({B, C, G}, x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "texstat_cos_sim_backward_cpu", [&] {
    const scalar_t* X = x.data_ptr<scalar_t>();
    const scalar_t* DS = ds.data_ptr<scalar_t>();
    const scalar_t* Sp = s.data_ptr<scalar_t>();
    const scalar_t* PN = pnorm.data_ptr<scalar_t>();
    const scalar_t* GU = gunit.data_ptr<scalar_t>();
    const scalar_t* GN = gnorm.data_ptr<scalar_t>();
    scalar_t* A = coef.data_ptr<scalar_t>();  // ds / max(|x|, eps)
    scalar_t* Bc = A + B * P;                 // ds * s / |x|^2 (0 where |x| < eps)
    const scalar_t eps = static_cast<scalar_t>(kNormEps);
    for (int64_t i = 0; i < B * P; ++i) {
      const scalar_t n = std::max(PN[i], eps);
      A[i] = DS[i] / n;
      Bc[i] = PN[i] >= eps ? DS[i] * Sp[i] / (n * n) : scalar_t(0);
    }
    // reduction pass: d(unit mean)[b, g, c] = sum_{p in g} A_p x[c, p]
    double* D = dgc.data_ptr<double>();
    at::parallel_for(0, B * C, 1, [&](int64_t r0, int64_t r1) {
      std::vector<double> acc(G);
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / C;
        const scalar_t* row = X + r * P;
        const scalar_t* a = A + b * P;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t y = 0; y < H; ++y)
          for (int64_t cx = 0; cx < S; ++cx)
            acc[(y / h) * S + cx] += sum_row(row + y * W + cx * w, a + y * W + cx * w, w);
        for (int64_t g = 0; g < G; ++g) D[r * G + g] = acc[g];
      }
    });
    // through the normalisation of the cell mean and the mean itself
    for (int64_t b = 0; b < B; ++b)
      for (int64_t g = 0; g < G; ++g) {
        const double gn = GN[b * G + g];
        double dot = 0;
        for (int64_t c = 0; c < C; ++c) dot += double(GU[(b * G + g) * C + c]) * D[(b * C + c) * G + g];
        for (int64_t c = 0; c < C; ++c) {
          double& d = D[(b * C + c) * G + g];
          d = gn >= kNormEps ? (d - double(GU[(b * G + g) * C + c]) * dot) / gn : d / kNormEps;
          d /= double(h * w);
        }
      }
    // per-pixel pass
    scalar_t* GX = grad_x.data_ptr<scalar_t>();
    at::parallel_for(0, B * C, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / C, c = r % C;
        const scalar_t* row = X + r * P;
        const scalar_t* a = A + b * P;
        const scalar_t* bc = Bc + b * P;
        scalar_t* out = GX + r * P;
        if (G == 1) {
          const scalar_t gu = GU[b * C + c], dg = static_cast<scalar_t>(D[r]);
          for (int64_t p = 0; p < P; ++p) out[p] = a[p] * gu - bc[p] * row[p] + dg;
        } else {
          for (int64_t p = 0; p < P; ++p) {
            const int64_t g = ((p / W) / h) * S + (p % W) / w;
            out[p] = a[p] * GU[(b * G + g) * C + c] - bc[p] * row[p] +
                     static_cast<scalar_t>(D[r * G + g]);
          }
        }
      }
    });
  });
  return grad_x;
}

}  // namespace
}  // namespace cpu
}  // namespace texture
}  // namespace sstkd

TORCH_LIBRARY_IMPL(sstkd_ops, CPU, m) {
  m.impl("texstat_cos_sim", &sstkd::texture::cpu::cos_sim_cpu);
  m.impl("texstat_cos_sim_backward", &sstkd::texture::cpu::cos_sim_backward_cpu);
}

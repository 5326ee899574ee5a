// C++ CPU kernels of the texture-statistics ops (schemas in csrc/texture_stats.cpp).
//
// Nothing of size N * H * W is ever allocated: every pass works pixel by pixel on the scalar
// texture intensity s (B, H, W), where a pixel has at most two non-zero codes. Reductions over
// pixels are sequential per image (or per fixed-size chunk, reduced in chunk order), so the
// results do not depend on the number of threads: bitwise reproducible run to run.
#include "../texture_stats_math.h"
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace sstkd_texstat {
namespace {

using namespace sstkd_texstat_math;  // NOLINT: the shared per-value rules

constexpr double kNormEps = 1e-12;  // F.normalize's eps
constexpr double kQco2dEps = 1e-6;  // STLNet QCO_2d's epsilon on the co-occurrence total
constexpr int64_t kChunk = 512;     // pixels per work item of the per-pixel passes

using at::Tensor;

void check_float_cpu(const Tensor& t, const char* fn, const char* name, int64_t ndim) {
  TORCH_CHECK(t.device().is_cpu(), fn, ": ", name, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK(t.dim() == ndim, fn, ": ", name, " must be ", ndim, "-D, got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, fn, ": ", name,
              " must be float32 or float64, got ", t.scalar_type());
}

template <typename T>
void check_finite_row(const T* s, int64_t P, const char* fn) {
  for (int64_t p = 0; p < P; ++p) {
    TORCH_CHECK(std::isfinite(s[p]), fn, ": the texture intensity is not finite (the input "
                "holds NaN or Inf)");
  }
}

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
  check_float_cpu(x_, "texstat_cos_sim", "x", 4);
  const Tensor x = x_.contiguous();
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), S = cells;
  TORCH_CHECK(S >= 1 && H % S == 0 && W % S == 0 && H > 0 && W > 0,
              "texstat_cos_sim: H, W must be positive multiples of cells, got ", x.sizes(),
              " and cells=", S);
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
  check_float_cpu(x_, "texstat_cos_sim_backward", "x", 4);
  const Tensor x = x_.contiguous(), ds = grad_s_.contiguous().to(x.scalar_type());
  const Tensor s = s_.contiguous(), pnorm = pnorm_.contiguous();
  const Tensor gunit = gunit_.contiguous(), gnorm = gnorm_.contiguous();
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), S = cells;
  const int64_t P = H * W, G = S * S, h = H / S, w = W / S;
  TORCH_CHECK(ds.numel() == B * P, "texstat_cos_sim_backward: grad_s has the wrong size");
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

// ---------------------------------------------------------------- STLNet QCO (1-D / 2-D)

std::tuple<Tensor, Tensor, Tensor, Tensor> qco_cpu(const Tensor& s_, int64_t L, bool cooc) {
  check_float_cpu(s_, "texstat_qco", "s", 3);
  TORCH_CHECK(L >= 1, "texstat_qco: num_levels must be >= 1, got ", L);
  const Tensor s = s_.contiguous();
  const int64_t Gn = s.size(0), h = s.size(1), w = s.size(2), P = h * w;
  TORCH_CHECK(P > 0, "texstat_qco: empty groups");
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
  check_float_cpu(s_, "texstat_qco_backward", "s", 3);
  const Tensor s = s_.contiguous(), levels = levels_.contiguous(), counts = counts_.contiguous();
  const Tensor gl = grad_levels_.contiguous().to(s.scalar_type());
  const Tensor gs = grad_sta_.contiguous().to(s.scalar_type());
  const Tensor extrema = extrema_.contiguous();
  const int64_t Gn = s.size(0), h = s.size(1), w = s.size(2), P = h * w, L = levels.size(1);
  const int64_t K = cooc ? L * L : L;
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
  check_float_cpu(f_, "texstat_qco_tem", "f", 3);
  const Tensor f = f_.contiguous(), s = s_.contiguous().to(f.scalar_type());
  const Tensor levels = levels_.contiguous().to(f.scalar_type());
  const Tensor delta = delta_.contiguous().to(f.scalar_type());
  const int64_t B = f.size(0), C = f.size(1), L = f.size(2), P = s.size(1);
  TORCH_CHECK(s.size(0) == B && levels.size(0) == B && levels.size(1) == L,
              "texstat_qco_tem: shapes of f ", f.sizes(), ", s ", s.sizes(), ", levels ",
              levels.sizes(), " do not match");
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
  check_float_cpu(f_, "texstat_qco_tem_backward", "f", 3);
  const Tensor f = f_.contiguous(), go = grad_out_.contiguous().to(f.scalar_type());
  const Tensor s = s_.contiguous().to(f.scalar_type());
  const Tensor levels = levels_.contiguous().to(f.scalar_type());
  const Tensor delta = delta_.contiguous().to(f.scalar_type());
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

template <typename T>
void cdf_of(const T* hd, int64_t N, T* cdf) {
  T run = 0;
  for (int64_t n = 0; n < N; ++n) {
    run += hd[n];
    cdf[n] = run - hd[n] / T(2);
  }
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> dtiem_cpu(const Tensor& s_, int64_t N,
                                                             int64_t iters, double theta,
                                                             at::IntArrayRef offsets) {
  check_float_cpu(s_, "texstat_dtiem", "s", 3);
  TORCH_CHECK(N >= 1 && iters >= 0, "texstat_dtiem: need num_levels >= 1 and iters >= 0");
  TORCH_CHECK(offsets.size() % 2 == 0, "texstat_dtiem: offsets must be (dy, dx) pairs");
  const Tensor s = s_.contiguous();
  const int64_t B = s.size(0), H = s.size(1), W = s.size(2), P = H * W;
  const int64_t D = static_cast<int64_t>(offsets.size()) / 2;
  TORCH_CHECK(P > 0, "texstat_dtiem: empty image");
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
        check_finite_row(S, P, "texstat_dtiem");
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
          if (N == 1) {
            kb[p] = 0;
            wb[p] = 0;
            sums[0] += 1.0;
            continue;
          }
          bool inside;
          hat_code(S[p], lv, N, kb[p], wb[p], inside);
          sums[kb[p]] += double(scalar_t(1) - wb[p]);
          sums[kb[p] + 1] += double(wb[p]);
        }
        scalar_t* rh = raw.data_ptr<scalar_t>() + b * N;
        scalar_t* hd = hist.data_ptr<scalar_t>() + b * N;
        for (int64_t n = 0; n < N; ++n) rh[n] = static_cast<scalar_t>(sums[n] / double(P));
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
          if (hh > 0 && ww > 0) {
            const int64_t y0 = std::max<int64_t>(0, -dy), x0 = std::max<int64_t>(0, -dx);
            for (int64_t y = y0; y < y0 + hh; ++y)
              for (int64_t x = x0; x < x0 + ww; ++x) {
                const int64_t i = y * W + x, j = (y + dy) * W + (x + dx);
                if (N == 1) {
                  M[0] += 1.0;
                  continue;
                }
                const int64_t ki = kb[i], kj = kb[j];
                const double ai[2] = {double(scalar_t(1) - wb[i]), double(wb[i])};
                const double aj[2] = {double(scalar_t(1) - wb[j]), double(wb[j])};
                for (int u = 0; u < 2; ++u)
                  for (int v = 0; v < 2; ++v) M[(ki + u) * N + kj + v] += ai[u] * aj[v];
              }
            for (int64_t e = 0; e < N * N; ++e) out[e] = static_cast<scalar_t>(M[e] / double(hh * ww));
          } else {
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
                          const Tensor& raw_, double theta, at::IntArrayRef offsets) {
  check_float_cpu(s_, "texstat_dtiem_backward", "s", 3);
  const Tensor s = s_.contiguous(), levels = levels_.contiguous(), raw = raw_.contiguous();
  const Tensor gq = grad_q_.contiguous().to(s.scalar_type());
  const Tensor gm = grad_cooc_.contiguous().to(s.scalar_type());
  const Tensor gh = grad_hist_.contiguous().to(s.scalar_type());
  const int64_t B = s.size(0), H = s.size(1), W = s.size(2), P = H * W, N = levels.size(1);
  const int64_t D = static_cast<int64_t>(offsets.size()) / 2;
  Tensor grad_s = at::zeros_like(s);
  if (N == 1) return grad_s;  // one level: every code is the constant 1
  Tensor kbuf = at::empty({B, P}, s.options().dtype(at::kLong));
  Tensor wbuf = at::empty({B, P}, s.options());
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "texstat_dtiem_backward_cpu", [&] {
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<double> dcdf(N), dh(N);
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
            double dE0 = double(dQ[p]) * double(cdf[k]) + dh[k] / double(P);
            double dE1 = double(dQ[p]) * double(cdf[k + 1]) + dh[k + 1] / double(P);
            for (int64_t d = 0; d < D; ++d) {
              const int64_t dy = offsets[2 * d], dx = offsets[2 * d + 1];
              const int64_t hh = H - std::abs(dy), ww = W - std::abs(dx);
              if (hh <= 0 || ww <= 0) continue;
              const double inv = 1.0 / double(hh * ww);
              const scalar_t* G = dM + d * N * N;
              const int64_t yn = y + dy, xn = x + dx, yp = y - dy, xp = x - dx;
              if (yn >= 0 && yn < H && xn >= 0 && xn < W) {  // p is the first of a pair
                const int64_t q = yn * W + xn, kq = kb[q];
                const double a0 = double(scalar_t(1) - wb[q]), a1 = double(wb[q]);
                dE0 += (G[k * N + kq] * a0 + G[k * N + kq + 1] * a1) * inv;
                dE1 += (G[(k + 1) * N + kq] * a0 + G[(k + 1) * N + kq + 1] * a1) * inv;
              }
              if (yp >= 0 && yp < H && xp >= 0 && xp < W) {  // p is the second of a pair
                const int64_t q = yp * W + xp, kq = kb[q];
                const double a0 = double(scalar_t(1) - wb[q]), a1 = double(wb[q]);
                dE0 += (a0 * G[kq * N + k] + a1 * G[(kq + 1) * N + k]) * inv;
                dE1 += (a0 * G[kq * N + k + 1] + a1 * G[(kq + 1) * N + k + 1]) * inv;
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
}  // namespace sstkd_texstat

TORCH_LIBRARY_IMPL(sstkd_ops, CPU, m) {
  m.impl("texstat_cos_sim", &sstkd_texstat::cos_sim_cpu);
  m.impl("texstat_cos_sim_backward", &sstkd_texstat::cos_sim_backward_cpu);
  m.impl("texstat_qco", &sstkd_texstat::qco_cpu);
  m.impl("texstat_qco_backward", &sstkd_texstat::qco_backward_cpu);
  m.impl("texstat_qco_tem", &sstkd_texstat::qco_tem_cpu);
  m.impl("texstat_qco_tem_backward", &sstkd_texstat::qco_tem_backward_cpu);
  m.impl("texstat_dtiem", &sstkd_texstat::dtiem_cpu);
  m.impl("texstat_dtiem_backward", &sstkd_texstat::dtiem_backward_cpu);
}

// CUDA kernels of the STLNet QCO ops texstat_qco(_backward) (1-D and 2-D) and of the TEM
// product texstat_qco_tem(_backward) (schemas in csrc/texture_stats.cpp; shared helpers in
// texture_stats_cuda.cuh); same semantics as csrc/cpu/texture_qco_cpu.cpp.
//
// QCO runs one thread block per group, staging each pixel's contributions in shared memory and
// accumulating them in staging order by owner thread (no float atomics: bitwise
// reproducible). The TEM product is coalesced per-pixel kernels plus per-row owner-accumulated
// histograms.
//
// Kernels run on PyTorch's current stream of the tensor's device.
#include "texture_stats_cuda.cuh"

#include "../texture_stats_math.h"
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <tuple>

namespace sstkd_texstat_cuda {
namespace {

using namespace sstkd_texstat_math;  // NOLINT: the shared per-value rules
using namespace detail;              // NOLINT: the shared CUDA helpers (texture_stats_cuda.cuh)

using at::Tensor;

// ---------------------------------------------------------------- STLNet QCO (1-D / 2-D)

template <typename T>
__global__ void qco_forward_kernel(const T* __restrict__ s_all, int64_t h, int64_t w,
                                   int64_t L, bool cooc, T* __restrict__ levels,
                                   T* __restrict__ counts, T* __restrict__ sta,
                                   int64_t* __restrict__ extrema, double* __restrict__ acc_all,
                                   int* __restrict__ bad) {
  constexpr int MAXE = kMaxCodes * kMaxCodes;
  __shared__ int ent[kThreads * MAXE];
  __shared__ double val[kThreads * MAXE];
  __shared__ double red[kThreads];
  __shared__ int64_t sidx[2 * kThreads];
  const int64_t g = blockIdx.x, P = h * w, K = cooc ? L * L : L;
  const T* S = s_all + g * P;
  T* q = levels + g * L;
  double* acc = acc_all + g * K;
  for (int64_t p = threadIdx.x; p < P; p += blockDim.x)
    if (!isfinite(S[p])) atomicExch(bad, 1);  // flag only: the value written is constant
  int64_t imin, imax;
  block_argminmax(S, P, imin, imax, sidx);
  const T lo = S[imin], hi = S[imax];
  for (int64_t k = threadIdx.x; k < L; k += blockDim.x)
    q[k] = static_cast<T>(level_frac(k, L)) * (hi - lo) + lo;
  for (int64_t e = threadIdx.x; e < K; e += blockDim.x) acc[e] = 0;
  if (threadIdx.x == 0) {
    extrema[2 * g] = imin;
    extrema[2 * g + 1] = imax;
  }
  __syncthreads();
  const T delta = L > 1 ? q[1] - q[0] : hi - lo;
  const int64_t npix = cooc ? (h - 1) * (w - 1) : P;
  for (int64_t c0 = 0; c0 < npix; c0 += kThreads) {
    const int64_t t = c0 + threadIdx.x;
    for (int m = 0; m < MAXE; ++m) ent[threadIdx.x * MAXE + m] = -1;
    if (t < npix) {
      int ka[kMaxCodes], kb[kMaxCodes];
      T ra[kMaxCodes], rb[kMaxCodes];
      if (!cooc) {
        const int n = stl_codes(S[t], q, L, delta, ka, ra);
        for (int m = 0; m < n; ++m) {
          ent[threadIdx.x * MAXE + m] = ka[m];
          val[threadIdx.x * MAXE + m] = ra[m];
        }
      } else {
        const int64_t y = t / (w - 1), x = t % (w - 1);
        const int na = stl_codes(S[y * w + x], q, L, delta, ka, ra);
        const int nb = stl_codes(S[(y + 1) * w + x + 1], q, L, delta, kb, rb);
        for (int i = 0; i < na; ++i)
          for (int j = 0; j < nb; ++j) {
            ent[threadIdx.x * MAXE + i * kMaxCodes + j] = static_cast<int>(ka[i] * L + kb[j]);
            val[threadIdx.x * MAXE + i * kMaxCodes + j] = double(ra[i]) * double(rb[j]);
          }
      }
    }
    __syncthreads();
    owner_accumulate<MAXE>(ent, val, acc);
    __syncthreads();
  }
  double part = 0;
  for (int64_t e = threadIdx.x; e < K; e += blockDim.x) part += acc[e];
  double total = block_sum(part, red);
  if (cooc) total += kQco2dEps;
  for (int64_t e = threadIdx.x; e < K; e += blockDim.x) {
    counts[g * K + e] = static_cast<T>(acc[e]);
    sta[g * K + e] = static_cast<T>(acc[e] / total);
  }
}

template <typename T>
__global__ void qco_backward_kernel(const T* __restrict__ gl, const T* __restrict__ gs,
                                    const T* __restrict__ s_all, const T* __restrict__ levels,
                                    const T* __restrict__ counts,
                                    const int64_t* __restrict__ extrema, int64_t h, int64_t w,
                                    int64_t L, bool cooc, double* __restrict__ dc_all,
                                    double* __restrict__ dq_all, T* __restrict__ ds_all) {
  __shared__ int ent[kThreads * kMaxCodes];
  __shared__ double val[kThreads * kMaxCodes];
  __shared__ double red[kThreads];
  const int64_t g = blockIdx.x, P = h * w, K = cooc ? L * L : L;
  const T* S = s_all + g * P;
  const T* q = levels + g * L;
  T* ds = ds_all + g * P;
  double* dc = dc_all + g * K;
  double* dq = dq_all + g * L;
  const int64_t imin = extrema[2 * g], imax = extrema[2 * g + 1];
  const T delta = L > 1 ? q[1] - q[0] : S[imax] - S[imin];
  double pt = 0, pany = 0;
  for (int64_t e = threadIdx.x; e < K; e += blockDim.x) {
    pt += counts[g * K + e];
    pany = fmax(pany, gs[g * K + e] != T(0) ? 1.0 : 0.0);
  }
  double total = block_sum(pt, red);
  if (cooc) total += kQco2dEps;
  double pdot = 0;
  for (int64_t e = threadIdx.x; e < K; e += blockDim.x)
    pdot += double(gs[g * K + e]) * (double(counts[g * K + e]) / total);
  const double dot = block_sum(pdot, red);
  const bool any = block_sum(pany, red) > 0;
  if (!cooc && total == 0 && any) {  // sta = 0/0: the official gradient is NaN
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x)
      ds[p] = static_cast<T>(nan(""));
    return;
  }
  for (int64_t e = threadIdx.x; e < K; e += blockDim.x)
    dc[e] = any ? (double(gs[g * K + e]) - dot) / total : 0.0;
  for (int64_t k = threadIdx.x; k < L; k += blockDim.x) dq[k] = 0;
  __syncthreads();
  for (int64_t c0 = 0; c0 < P; c0 += kThreads) {
    const int64_t p = c0 + threadIdx.x;
    for (int m = 0; m < kMaxCodes; ++m) ent[threadIdx.x * kMaxCodes + m] = -1;
    if (p < P) {
      int kk[kMaxCodes];
      double contrib[kMaxCodes];
      const int n = qco_pixel_grad(S, p, h, w, q, L, delta, dc, cooc, kk, contrib);
      double acc = 0;
      for (int m = 0; m < n; ++m) {
        acc += contrib[m];
        ent[threadIdx.x * kMaxCodes + m] = kk[m];
        val[threadIdx.x * kMaxCodes + m] = -contrib[m];
      }
      ds[p] = static_cast<T>(acc);
    }
    __syncthreads();
    owner_accumulate<kMaxCodes>(ent, val, dq);
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    double dlo = 0, dhi = 0;
    for (int64_t k = 0; k < L; ++k) {
      const double d = dq[k] + double(gl[g * L + k]);
      const double f = static_cast<T>(level_frac(k, L));
      dhi += d * f;
      dlo += d - d * f;
    }
    ds[imin] += static_cast<T>(dlo);
    ds[imax] += static_cast<T>(dhi);
  }
}

std::tuple<Tensor, Tensor, Tensor, Tensor> qco_cuda(const Tensor& s_, int64_t L, bool cooc) {
  check_cuda(s_, "texstat_qco", "s");
  TORCH_CHECK(s_.dim() == 3 && L >= 1, "texstat_qco: s must be 3-D and num_levels >= 1");
  TORCH_CHECK(!cooc || L * L < (int64_t(1) << 31), "texstat_qco: num_levels too large");
  const DeviceScope scope(s_);
  const Tensor s = s_.contiguous();
  const int64_t Gn = s.size(0), h = s.size(1), w = s.size(2), K = cooc ? L * L : L;
  TORCH_CHECK(h * w > 0, "texstat_qco: empty groups");
  Tensor levels = at::empty({Gn, L}, s.options());
  Tensor counts = cooc ? at::empty({Gn, L, L}, s.options()) : at::empty({Gn, L}, s.options());
  Tensor sta = at::empty_like(counts);
  Tensor extrema = at::empty({Gn, 2}, s.options().dtype(at::kLong));
  Tensor acc = at::empty({Gn, K}, s.options().dtype(at::kDouble));
  Tensor bad = at::zeros({1}, s.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "texstat_qco_cuda", [&] {
    qco_forward_kernel<scalar_t><<<Gn, kThreads, 0, current_stream()>>>(
        s.data_ptr<scalar_t>(), h, w, L, cooc, levels.data_ptr<scalar_t>(),
        counts.data_ptr<scalar_t>(), sta.data_ptr<scalar_t>(), extrema.data_ptr<int64_t>(),
        acc.data_ptr<double>(), bad.data_ptr<int>());
    check_launch("texstat_qco");
  });
  TORCH_CHECK(bad.item<int>() == 0,
              "texstat_qco: the texture intensity is not finite (the input holds NaN or Inf)");
  return {levels, sta, counts, extrema};
}

Tensor qco_backward_cuda(const Tensor& grad_levels, const Tensor& grad_sta, const Tensor& s_,
                         const Tensor& levels_, const Tensor& counts_, const Tensor& extrema_,
                         bool cooc) {
  check_cuda(s_, "texstat_qco_backward", "s");
  const DeviceScope scope(s_);
  const Tensor s = s_.contiguous(), levels = levels_.contiguous(), counts = counts_.contiguous();
  const Tensor gl = grad_levels.contiguous().to(s.scalar_type());
  const Tensor gs = grad_sta.contiguous().to(s.scalar_type());
  const Tensor extrema = extrema_.contiguous();
  const int64_t Gn = s.size(0), h = s.size(1), w = s.size(2), L = levels.size(1);
  const int64_t K = cooc ? L * L : L;
  Tensor ds = at::empty_like(s);
  Tensor dc = at::empty({Gn, K}, s.options().dtype(at::kDouble));
  Tensor dq = at::empty({Gn, L}, s.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "texstat_qco_backward_cuda", [&] {
    qco_backward_kernel<scalar_t><<<Gn, kThreads, 0, current_stream()>>>(
        gl.data_ptr<scalar_t>(), gs.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(),
        levels.data_ptr<scalar_t>(), counts.data_ptr<scalar_t>(), extrema.data_ptr<int64_t>(), h,
        w, L, cooc, dc.data_ptr<double>(), dq.data_ptr<double>(), ds.data_ptr<scalar_t>());
    check_launch("texstat_qco_backward");
  });
  return ds;
}

// ------------------------------------------------------------------------ TEM product

template <typename T>
__global__ void tem_codes_kernel(const T* s, const T* levels, const T* delta, int64_t B,
                                 int64_t P, int64_t L, int* ks, T* rs) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= B * P) return;
  const int64_t b = i / P;
  const int n = stl_codes(s[i], levels + b * L, L, delta[b], ks + i * kMaxCodes,
                          rs + i * kMaxCodes);
  for (int m = n; m < kMaxCodes; ++m) {
    ks[i * kMaxCodes + m] = -1;
    rs[i * kMaxCodes + m] = T(0);
  }
}

template <typename T>
__global__ void tem_forward_kernel(const T* f, const int* ks, const T* rs, T* out, int64_t B,
                                   int64_t C, int64_t P, int64_t L) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= B * C * P) return;
  const int64_t r = i / P, p = i % P, b = r / C;
  const int* k = ks + (b * P + p) * kMaxCodes;
  const T* rw = rs + (b * P + p) * kMaxCodes;
  T acc = 0;
  for (int m = 0; m < kMaxCodes && k[m] >= 0; ++m) acc += f[r * L + k[m]] * rw[m];
  out[i] = acc;
}

// grad f[b, c, :] (block per row) or grad levels[b, :] (block per image, from contributions)
template <typename T>
__global__ void tem_row_hist_kernel(const T* gout, const int* ks, const T* rs,
                                    const double* contrib, int64_t C, int64_t P, int64_t L,
                                    double* acc_all, T* out) {
  __shared__ int ent[kThreads * kMaxCodes];
  __shared__ double val[kThreads * kMaxCodes];
  const int64_t r = blockIdx.x, b = contrib ? r : r / C;
  double* acc = acc_all + r * L;
  for (int64_t k = threadIdx.x; k < L; k += blockDim.x) acc[k] = 0;
  __syncthreads();
  for (int64_t c0 = 0; c0 < P; c0 += kThreads) {
    const int64_t p = c0 + threadIdx.x;
    for (int m = 0; m < kMaxCodes; ++m) {
      const int64_t j = (b * P + p) * kMaxCodes + m;
      const bool ok = p < P && ks[j] >= 0;
      ent[threadIdx.x * kMaxCodes + m] = ok ? ks[j] : -1;
      val[threadIdx.x * kMaxCodes + m] =
          ok ? (contrib ? contrib[j] : double(gout[r * P + p]) * double(rs[j])) : 0.0;
    }
    __syncthreads();
    owner_accumulate<kMaxCodes>(ent, val, acc);
    __syncthreads();
  }
  for (int64_t k = threadIdx.x; k < L; k += blockDim.x) out[r * L + k] = static_cast<T>(acc[k]);
}

template <typename T>
__global__ void tem_grad_s_kernel(const T* f, const T* gout, const T* s, const T* levels,
                                  const int* ks, int64_t B, int64_t C, int64_t P, int64_t L,
                                  T* gs, double* contrib) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= B * P) return;
  const int64_t b = i / P, p = i % P;
  const int* k = ks + i * kMaxCodes;
  double gsum[kMaxCodes] = {0, 0, 0, 0};
  for (int64_t c = 0; c < C; ++c) {
    const double gv = gout[(b * C + c) * P + p];
    for (int m = 0; m < kMaxCodes && k[m] >= 0; ++m) gsum[m] += double(f[(b * C + c) * L + k[m]]) * gv;
  }
  double acc = 0;
  for (int m = 0; m < kMaxCodes; ++m) {
    double c = 0;
    if (k[m] >= 0) {
      const double sg = sign_of(levels[b * L + k[m]] - s[i]);
      acc += gsum[m] * sg;
      c = -gsum[m] * sg;
    }
    contrib[i * kMaxCodes + m] = c;
  }
  gs[i] = static_cast<T>(acc);
}

Tensor qco_tem_cuda(const Tensor& f_, const Tensor& s_, const Tensor& levels_,
                    const Tensor& delta_) {
  check_cuda(f_, "texstat_qco_tem", "f");
  const DeviceScope scope(f_);
  const Tensor f = f_.contiguous(), s = s_.contiguous().to(f.scalar_type());
  const Tensor levels = levels_.contiguous().to(f.scalar_type());
  const Tensor delta = delta_.contiguous().to(f.device(), f.scalar_type());
  const int64_t B = f.size(0), C = f.size(1), L = f.size(2), P = s.size(1);
  Tensor out = at::empty({B, C, P}, f.options());
  Tensor ks = at::empty({B, P, kMaxCodes}, f.options().dtype(at::kInt));
  Tensor rs = at::empty({B, P, kMaxCodes}, f.options());
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "texstat_qco_tem_cuda", [&] {
    tem_codes_kernel<scalar_t><<<ceil_div(B * P, 256), 256, 0, stream>>>(
        s.data_ptr<scalar_t>(), levels.data_ptr<scalar_t>(), delta.data_ptr<scalar_t>(), B, P,
        L, ks.data_ptr<int>(), rs.data_ptr<scalar_t>());
    check_launch("texstat_qco_tem");
    tem_forward_kernel<scalar_t><<<ceil_div(B * C * P, 256), 256, 0, stream>>>(
        f.data_ptr<scalar_t>(), ks.data_ptr<int>(), rs.data_ptr<scalar_t>(),
        out.data_ptr<scalar_t>(), B, C, P, L);
    check_launch("texstat_qco_tem");
  });
  return out;
}

std::tuple<Tensor, Tensor, Tensor> qco_tem_backward_cuda(const Tensor& grad_out_,
                                                         const Tensor& f_, const Tensor& s_,
                                                         const Tensor& levels_,
                                                         const Tensor& delta_) {
  check_cuda(f_, "texstat_qco_tem_backward", "f");
  const DeviceScope scope(f_);
  const Tensor f = f_.contiguous(), go = grad_out_.contiguous().to(f.scalar_type());
  const Tensor s = s_.contiguous().to(f.scalar_type());
  const Tensor levels = levels_.contiguous().to(f.scalar_type());
  const Tensor delta = delta_.contiguous().to(f.device(), f.scalar_type());
  const int64_t B = f.size(0), C = f.size(1), L = f.size(2), P = s.size(1);
  Tensor ks = at::empty({B, P, kMaxCodes}, f.options().dtype(at::kInt));
  Tensor rs = at::empty({B, P, kMaxCodes}, f.options());
  Tensor contrib = at::empty({B, P, kMaxCodes}, f.options().dtype(at::kDouble));
  Tensor acc = at::empty({B * C, L}, f.options().dtype(at::kDouble));
  Tensor gf = at::empty_like(f), gs = at::empty({B, P}, f.options());
  Tensor gl = at::empty({B, L}, f.options());
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "texstat_qco_tem_backward_cuda", [&] {
    tem_codes_kernel<scalar_t><<<ceil_div(B * P, 256), 256, 0, stream>>>(
        s.data_ptr<scalar_t>(), levels.data_ptr<scalar_t>(), delta.data_ptr<scalar_t>(), B, P,
        L, ks.data_ptr<int>(), rs.data_ptr<scalar_t>());
    check_launch("texstat_qco_tem_backward");
    tem_row_hist_kernel<scalar_t><<<B * C, kThreads, 0, stream>>>(
        go.data_ptr<scalar_t>(), ks.data_ptr<int>(), rs.data_ptr<scalar_t>(), nullptr, C, P, L,
        acc.data_ptr<double>(), gf.data_ptr<scalar_t>());
    check_launch("texstat_qco_tem_backward");
    tem_grad_s_kernel<scalar_t><<<ceil_div(B * P, 256), 256, 0, stream>>>(
        f.data_ptr<scalar_t>(), go.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(),
        levels.data_ptr<scalar_t>(), ks.data_ptr<int>(), B, C, P, L, gs.data_ptr<scalar_t>(),
        contrib.data_ptr<double>());
    check_launch("texstat_qco_tem_backward");
    tem_row_hist_kernel<scalar_t><<<B, kThreads, 0, stream>>>(
        nullptr, ks.data_ptr<int>(), nullptr, contrib.data_ptr<double>(), C, P, L,
        acc.data_ptr<double>(), gl.data_ptr<scalar_t>());
    check_launch("texstat_qco_tem_backward");
  });
  return {gf, gs, gl};
}

}  // namespace
}  // namespace sstkd_texstat_cuda

TORCH_LIBRARY_IMPL(sstkd_ops, CUDA, m) {
  m.impl("texstat_qco", &sstkd_texstat_cuda::qco_cuda);
  m.impl("texstat_qco_backward", &sstkd_texstat_cuda::qco_backward_cuda);
  m.impl("texstat_qco_tem", &sstkd_texstat_cuda::qco_tem_cuda);
  m.impl("texstat_qco_tem_backward", &sstkd_texstat_cuda::qco_tem_backward_cuda);
}

// CUDA kernels of the STLNet QCO ops texstat_qco(_backward) (1-D and 2-D) and of the TEM
// product texstat_qco_tem(_backward) (schemas in csrc/texture/texture_stats.cpp; shared helpers in
// texture_stats_cuda.cuh); same semantics as csrc/texture/cpu/texture_qco_cpu.cpp.
//
// QCO splits each group across several blocks (partial sums per block in a workspace, added in
// block order); each block stages its pixels' contributions in shared memory and accumulates
// them in staging order by owner thread (no float atomics: bitwise reproducible). The TEM
// product is coalesced per-pixel kernels plus owner-accumulated histograms: per row for the
// feature gradient, per block of pixels (then in block order) for the level gradient.
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
#include <algorithm>
#include <cstdint>
#include <tuple>

namespace sstkd { namespace texture { namespace cuda {
namespace {

using namespace ::sstkd::texture::math;  // NOLINT: the shared per-value rules
using namespace detail;              // NOLINT: the shared CUDA helpers (texture_stats_cuda.cuh)

using at::Tensor;

// ---------------------------------------------------------------- STLNet QCO (1-D / 2-D)
//
// Each group (image, or image cell for QCO 2-D) is split across nb = split_blocks() blocks of
// `chunk` consecutive pixels (pixel pairs for the co-occurrence); block index = g * nb + j.
// Forward: extrema per block -> extrema and levels per group (extrema_partial_kernel and
// stl_levels_kernel, texture_stats_cuda.cuh) -> partial (co-)counts per block -> sum of the
// partials in block order -> normalised counts. Backward: per-group coefficients -> per-pixel
// gradient and partial level gradients per block -> sum in block order -> gradient of the
// extrema.
// A group holding NaN / Inf gets NaN outputs, a group whose extrema index no pixel a NaN
// gradient: flags stay on the device (no host round trip).

// Stage 3: partial (co-)counts of each block's pixels (pairs with the (+1, +1) neighbour).
template <typename T>
__global__ void qco_count_partial_kernel(const T* __restrict__ s_all, int64_t h, int64_t w,
                                         int64_t L, bool cooc, int64_t nb, int64_t chunk,
                                         const T* __restrict__ levels,
                                         const int64_t* __restrict__ extrema,
                                         const int* __restrict__ bad,
                                         double* __restrict__ part) {
  constexpr int MAXE = kMaxCodes * kMaxCodes;
  __shared__ int ent[kThreads * MAXE];
  __shared__ double val[kThreads * MAXE];
  const int64_t g = blockIdx.x / nb, j = blockIdx.x % nb, P = h * w, K = cooc ? L * L : L;
  if (bad[g]) return;  // NaN outputs (stage 4): this group's partials are ignored
  const T* S = s_all + g * P;
  const T* q = levels + g * L;
  double* acc = part + blockIdx.x * K;
  const T delta = L > 1 ? q[1] - q[0] : S[extrema[2 * g + 1]] - S[extrema[2 * g]];
  const int64_t npix = cooc ? (h - 1) * (w - 1) : P;
  const int64_t t0 = j * chunk, t1 = t0 + chunk < npix ? t0 + chunk : npix;
  for (int64_t e = threadIdx.x; e < K; e += blockDim.x) acc[e] = 0;
  __syncthreads();
  for (int64_t c0 = t0; c0 < t1; c0 += kThreads) {
    const int64_t t = c0 + threadIdx.x;
    for (int m = 0; m < MAXE; ++m) ent[threadIdx.x * MAXE + m] = -1;
    if (t < t1) {
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
        const int nb2 = na > 0 ? stl_codes(S[(y + 1) * w + x + 1], q, L, delta, kb, rb) : 0;
        for (int i = 0; i < na; ++i)
          for (int k = 0; k < nb2; ++k) {
            ent[threadIdx.x * MAXE + i * kMaxCodes + k] = static_cast<int>(ka[i] * L + kb[k]);
            val[threadIdx.x * MAXE + i * kMaxCodes + k] = double(ra[i]) * double(rb[k]);
          }
      }
    }
    __syncthreads();
    owner_accumulate<MAXE>(ent, val, acc);
    __syncthreads();
  }
}

// Stage 4 (block per group): counts and normalised counts from the summed partials.
template <typename T>
__global__ void qco_finish_kernel(const double* __restrict__ acc_all, int64_t L, bool cooc,
                                  const int* __restrict__ bad, T* __restrict__ levels,
                                  T* __restrict__ counts, T* __restrict__ sta) {
  __shared__ double red[kThreads];
  const int64_t g = blockIdx.x, K = cooc ? L * L : L;
  if (bad[g]) {  // NaN / Inf in the group
    const T nan_v = static_cast<T>(nan(""));
    for (int64_t e = threadIdx.x; e < K; e += blockDim.x)
      counts[g * K + e] = sta[g * K + e] = nan_v;
    for (int64_t k = threadIdx.x; k < L; k += blockDim.x) levels[g * L + k] = nan_v;
    return;
  }
  const double* acc = acc_all + g * K;
  double part = 0;
  for (int64_t e = threadIdx.x; e < K; e += blockDim.x) part += acc[e];
  double total = block_sum(part, red);
  if (cooc) total += kQco2dEps;
  for (int64_t e = threadIdx.x; e < K; e += blockDim.x) {
    counts[g * K + e] = static_cast<T>(acc[e]);
    sta[g * K + e] = static_cast<T>(acc[e] / total);  // 1-D: NaN when total == 0
  }
}

// Backward stage 1 (block per group): d loss / d counts and the group's NaN flag (sta = 0/0
// with a non-zero incoming gradient, as the official code; or extrema outside the group).
template <typename T>
__global__ void qco_backward_prep_kernel(const T* __restrict__ gs, const T* __restrict__ counts,
                                         const int64_t* __restrict__ extrema, int64_t P,
                                         int64_t L, bool cooc, double* __restrict__ dc_all,
                                         int* __restrict__ nan_flag) {
  __shared__ double red[kThreads];
  const int64_t g = blockIdx.x, K = cooc ? L * L : L;
  double* dc = dc_all + g * K;
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
  for (int64_t e = threadIdx.x; e < K; e += blockDim.x)
    dc[e] = any ? (double(gs[g * K + e]) - dot) / total : 0.0;
  if (threadIdx.x == 0) {
    const int64_t imin = extrema[2 * g], imax = extrema[2 * g + 1];
    const bool in_range = imin >= 0 && imin < P && imax >= 0 && imax < P;
    nan_flag[g] = (!in_range || (!cooc && total == 0 && any)) ? 1 : 0;
  }
}

// Backward stage 2: gradient of each pixel through its codes; partial level gradients per
// block (of `chunk` pixels).
template <typename T>
__global__ void qco_backward_pixels_kernel(const T* __restrict__ s_all,
                                           const T* __restrict__ levels,
                                           const int64_t* __restrict__ extrema, int64_t h,
                                           int64_t w, int64_t L, bool cooc, int64_t nb,
                                           int64_t chunk, const double* __restrict__ dc_all,
                                           const int* __restrict__ nan_flag,
                                           double* __restrict__ part, T* __restrict__ ds_all) {
  __shared__ int ent[kThreads * kMaxCodes];
  __shared__ double val[kThreads * kMaxCodes];
  const int64_t g = blockIdx.x / nb, j = blockIdx.x % nb, P = h * w, K = cooc ? L * L : L;
  const int64_t p0 = j * chunk, p1 = p0 + chunk < P ? p0 + chunk : P;
  const T* S = s_all + g * P;
  T* ds = ds_all + g * P;
  if (nan_flag[g]) {
    for (int64_t p = p0 + threadIdx.x; p < p1; p += blockDim.x) ds[p] = static_cast<T>(nan(""));
    return;
  }
  const T* q = levels + g * L;
  const double* dc = dc_all + g * K;
  double* dq = part + blockIdx.x * L;
  const T delta = L > 1 ? q[1] - q[0] : S[extrema[2 * g + 1]] - S[extrema[2 * g]];
  for (int64_t k = threadIdx.x; k < L; k += blockDim.x) dq[k] = 0;
  __syncthreads();
  for (int64_t c0 = p0; c0 < p1; c0 += kThreads) {
    const int64_t p = c0 + threadIdx.x;
    for (int m = 0; m < kMaxCodes; ++m) ent[threadIdx.x * kMaxCodes + m] = -1;
    if (p < p1) {
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
}

// Backward stage 3 (thread per group): the level gradients reach the extremal pixels.
template <typename T>
__global__ void qco_backward_extrema_kernel(const T* __restrict__ gl,
                                            const double* __restrict__ dq_all,
                                            const int64_t* __restrict__ extrema,
                                            const int* __restrict__ nan_flag, int64_t G,
                                            int64_t P, int64_t L, T* __restrict__ ds_all) {
  const int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (g >= G || nan_flag[g]) return;
  double dlo = 0, dhi = 0;
  for (int64_t k = 0; k < L; ++k) {
    const double d = dq_all[g * L + k] + double(gl[g * L + k]);
    const double f = static_cast<T>(level_frac(k, L));
    dhi += d * f;
    dlo += d - d * f;
  }
  ds_all[g * P + extrema[2 * g]] += static_cast<T>(dlo);
  ds_all[g * P + extrema[2 * g + 1]] += static_cast<T>(dhi);
}

std::tuple<Tensor, Tensor, Tensor, Tensor> qco_cuda(const Tensor& s_, int64_t L, bool cooc) {
  constexpr const char* fn = "texstat_qco";
  qco_args(s_, L, fn, /*cuda=*/true);
  const DeviceScope scope(s_);
  const Tensor s = s_.contiguous();
  const int64_t Gn = s.size(0), h = s.size(1), w = s.size(2), P = h * w, K = cooc ? L * L : L;
  Tensor levels = at::empty({Gn, L}, s.options());
  Tensor counts = cooc ? at::empty({Gn, L, L}, s.options()) : at::empty({Gn, L}, s.options());
  Tensor sta = at::empty_like(counts);
  Tensor extrema = at::empty({Gn, 2}, s.options().dtype(at::kLong));
  if (Gn == 0) return {levels, sta, counts, extrema};
  // extrema pass over pixels, counting pass over pixels (1-D) or pixel pairs (co-occurrence)
  const int64_t nb_x = split_blocks(P, Gn, 0), chunk_x = ceil_div(P, nb_x);
  const int64_t npix = cooc ? (h - 1) * (w - 1) : P;
  const int64_t nb = split_blocks(npix, Gn, K), chunk = ceil_div(std::max<int64_t>(npix, 1), nb);
  const unsigned grid_x = grid_blocks(Gn * nb_x, 1, fn), grid = grid_blocks(Gn * nb, 1, fn);
  const unsigned groups = grid_blocks(Gn, 1, fn), sums = grid_blocks(Gn * K, 256, fn);
  const auto dopt = s.options().dtype(at::kDouble);
  Tensor part_idx = at::empty({Gn * nb_x, 2}, s.options().dtype(at::kLong));
  Tensor part_bad = at::empty({Gn * nb_x}, s.options().dtype(at::kInt));
  Tensor bad = at::empty({Gn}, s.options().dtype(at::kInt));
  Tensor part = at::empty({Gn * nb, K}, dopt);
  Tensor acc = nb > 1 ? at::empty({Gn, K}, dopt) : part;
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "texstat_qco_cuda", [&] {
    const scalar_t* S = s.data_ptr<scalar_t>();
    extrema_partial_kernel<scalar_t><<<grid_x, kThreads, 0, stream>>>(
        S, P, nb_x, chunk_x, part_idx.data_ptr<int64_t>(), part_bad.data_ptr<int>());
    check_launch(fn);
    stl_levels_kernel<scalar_t><<<groups, kThreads, 0, stream>>>(
        S, P, L, nb_x, part_idx.data_ptr<int64_t>(), part_bad.data_ptr<int>(),
        levels.data_ptr<scalar_t>(), extrema.data_ptr<int64_t>(), bad.data_ptr<int>());
    check_launch(fn);
    qco_count_partial_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
        S, h, w, L, cooc, nb, chunk, levels.data_ptr<scalar_t>(), extrema.data_ptr<int64_t>(),
        bad.data_ptr<int>(), part.data_ptr<double>());
    check_launch(fn);
    if (nb > 1) {
      sum_partials_kernel<<<sums, 256, 0, stream>>>(part.data_ptr<double>(), Gn, nb, K,
                                                    acc.data_ptr<double>());
      check_launch(fn);
    }
    qco_finish_kernel<scalar_t><<<groups, kThreads, 0, stream>>>(
        acc.data_ptr<double>(), L, cooc, bad.data_ptr<int>(), levels.data_ptr<scalar_t>(),
        counts.data_ptr<scalar_t>(), sta.data_ptr<scalar_t>());
    check_launch(fn);
  });
  return {levels, sta, counts, extrema};
}

Tensor qco_backward_cuda(const Tensor& grad_levels_, const Tensor& grad_sta_, const Tensor& s_,
                         const Tensor& levels_, const Tensor& counts_, const Tensor& extrema_,
                         bool cooc) {
  constexpr const char* fn = "texstat_qco_backward";
  qco_backward_args(grad_levels_, grad_sta_, s_, levels_, counts_, extrema_, cooc, fn, true);
  const DeviceScope scope(s_);
  const Tensor s = s_.contiguous(), levels = levels_.contiguous(), counts = counts_.contiguous();
  const Tensor gl = grad_levels_.contiguous(), gs = grad_sta_.contiguous();
  const Tensor extrema = extrema_.contiguous();
  const int64_t Gn = s.size(0), h = s.size(1), w = s.size(2), P = h * w, L = levels.size(1);
  const int64_t K = cooc ? L * L : L;
  Tensor ds = at::empty_like(s);
  if (Gn == 0) return ds;
  const int64_t nb = split_blocks(P, Gn, L), chunk = ceil_div(P, nb);
  const unsigned groups = grid_blocks(Gn, 1, fn), grid = grid_blocks(Gn * nb, 1, fn);
  const unsigned sums = grid_blocks(Gn * L, 256, fn), threads = grid_blocks(Gn, 128, fn);
  const auto dopt = s.options().dtype(at::kDouble);
  Tensor dc = at::empty({Gn, K}, dopt);
  Tensor nan_flag = at::empty({Gn}, s.options().dtype(at::kInt));
  Tensor part = at::empty({Gn * nb, L}, dopt);
  Tensor dq = nb > 1 ? at::empty({Gn, L}, dopt) : part;
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "texstat_qco_backward_cuda", [&] {
    qco_backward_prep_kernel<scalar_t><<<groups, kThreads, 0, stream>>>(
        gs.data_ptr<scalar_t>(), counts.data_ptr<scalar_t>(), extrema.data_ptr<int64_t>(), P, L,
        cooc, dc.data_ptr<double>(), nan_flag.data_ptr<int>());
    check_launch(fn);
    qco_backward_pixels_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
        s.data_ptr<scalar_t>(), levels.data_ptr<scalar_t>(), extrema.data_ptr<int64_t>(), h, w,
        L, cooc, nb, chunk, dc.data_ptr<double>(), nan_flag.data_ptr<int>(),
        part.data_ptr<double>(), ds.data_ptr<scalar_t>());
    check_launch(fn);
    if (nb > 1) {
      sum_partials_kernel<<<sums, 256, 0, stream>>>(part.data_ptr<double>(), Gn, nb, L,
                                                    dq.data_ptr<double>());
      check_launch(fn);
    }
    qco_backward_extrema_kernel<scalar_t><<<threads, 128, 0, stream>>>(
        gl.data_ptr<scalar_t>(), dq.data_ptr<double>(), extrema.data_ptr<int64_t>(),
        nan_flag.data_ptr<int>(), Gn, P, L, ds.data_ptr<scalar_t>());
    check_launch(fn);
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

// Histograms of the codes over pixels, block index r * nb + j over pixels [j * chunk, ...):
// grad f[b, c, :] (rows r = b * C + c, nb = 1: gout times the code weights) or the partial
// grad levels[b, :] of block j (rows r = b, from the per-code contributions).
template <typename T>
__global__ void tem_row_hist_kernel(const T* gout, const int* ks, const T* rs,
                                    const double* contrib, int64_t C, int64_t P, int64_t L,
                                    int64_t nb, int64_t chunk, double* acc_all) {
  __shared__ int ent[kThreads * kMaxCodes];
  __shared__ double val[kThreads * kMaxCodes];
  const int64_t r = blockIdx.x / nb, j = blockIdx.x % nb, b = contrib ? r : r / C;
  const int64_t p0 = j * chunk, p1 = p0 + chunk < P ? p0 + chunk : P;
  double* acc = acc_all + blockIdx.x * L;
  for (int64_t k = threadIdx.x; k < L; k += blockDim.x) acc[k] = 0;
  __syncthreads();
  for (int64_t c0 = p0; c0 < p1; c0 += kThreads) {
    const int64_t p = c0 + threadIdx.x;
    for (int m = 0; m < kMaxCodes; ++m) {
      const int64_t jj = (b * P + p) * kMaxCodes + m;
      const bool ok = p < p1 && ks[jj] >= 0;
      ent[threadIdx.x * kMaxCodes + m] = ok ? ks[jj] : -1;
      val[threadIdx.x * kMaxCodes + m] =
          ok ? (contrib ? contrib[jj] : double(gout[r * P + p]) * double(rs[jj])) : 0.0;
    }
    __syncthreads();
    owner_accumulate<kMaxCodes>(ent, val, acc);
    __syncthreads();
  }
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
  constexpr const char* fn = "texstat_qco_tem";
  qco_tem_args(nullptr, f_, s_, levels_, delta_, fn, /*cuda=*/true);
  const DeviceScope scope(f_);
  const Tensor f = f_.contiguous(), s = s_.contiguous();
  const Tensor levels = levels_.contiguous(), delta = delta_.contiguous();
  const int64_t B = f.size(0), C = f.size(1), L = f.size(2), P = s.size(1);
  Tensor out = at::empty({B, C, P}, f.options());
  const unsigned pixels = grid_blocks(B * P, 256, fn), all = grid_blocks(B * C * P, 256, fn);
  if (all == 0) return out;
  Tensor ks = at::empty({B, P, kMaxCodes}, f.options().dtype(at::kInt));
  Tensor rs = at::empty({B, P, kMaxCodes}, f.options());
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "texstat_qco_tem_cuda", [&] {
    tem_codes_kernel<scalar_t><<<pixels, 256, 0, stream>>>(
        s.data_ptr<scalar_t>(), levels.data_ptr<scalar_t>(), delta.data_ptr<scalar_t>(), B, P,
        L, ks.data_ptr<int>(), rs.data_ptr<scalar_t>());
    check_launch(fn);
    tem_forward_kernel<scalar_t><<<all, 256, 0, stream>>>(
        f.data_ptr<scalar_t>(), ks.data_ptr<int>(), rs.data_ptr<scalar_t>(),
        out.data_ptr<scalar_t>(), B, C, P, L);
    check_launch(fn);
  });
  return out;
}

std::tuple<Tensor, Tensor, Tensor> qco_tem_backward_cuda(const Tensor& grad_out_,
                                                         const Tensor& f_, const Tensor& s_,
                                                         const Tensor& levels_,
                                                         const Tensor& delta_) {
  constexpr const char* fn = "texstat_qco_tem_backward";
  qco_tem_args(&grad_out_, f_, s_, levels_, delta_, fn, /*cuda=*/true);
  const DeviceScope scope(f_);
  const Tensor f = f_.contiguous(), go = grad_out_.contiguous(), s = s_.contiguous();
  const Tensor levels = levels_.contiguous(), delta = delta_.contiguous();
  const int64_t B = f.size(0), C = f.size(1), L = f.size(2), P = s.size(1);
  const auto dopt = f.options().dtype(at::kDouble);
  if (B * C * P == 0)  // nothing reaches f, s or levels
    return {at::zeros_like(f), at::zeros({B, P}, f.options()), at::zeros({B, L}, f.options())};
  const int64_t nb = split_blocks(P, B, L), chunk = ceil_div(P, nb);
  const unsigned pixels = grid_blocks(B * P, 256, fn), rows = grid_blocks(B * C, 1, fn);
  const unsigned grid = grid_blocks(B * nb, 1, fn), sums = grid_blocks(B * L, 256, fn);
  Tensor ks = at::empty({B, P, kMaxCodes}, f.options().dtype(at::kInt));
  Tensor rs = at::empty({B, P, kMaxCodes}, f.options());
  Tensor contrib = at::empty({B, P, kMaxCodes}, dopt);
  Tensor gf_acc = at::empty({B, C, L}, dopt), gs = at::empty({B, P}, f.options());
  Tensor part = at::empty({B * nb, L}, dopt);
  Tensor gl_acc = nb > 1 ? at::empty({B, L}, dopt) : part;
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "texstat_qco_tem_backward_cuda", [&] {
    tem_codes_kernel<scalar_t><<<pixels, 256, 0, stream>>>(
        s.data_ptr<scalar_t>(), levels.data_ptr<scalar_t>(), delta.data_ptr<scalar_t>(), B, P,
        L, ks.data_ptr<int>(), rs.data_ptr<scalar_t>());
    check_launch(fn);
    tem_row_hist_kernel<scalar_t><<<rows, kThreads, 0, stream>>>(
        go.data_ptr<scalar_t>(), ks.data_ptr<int>(), rs.data_ptr<scalar_t>(), nullptr, C, P, L,
        1, P, gf_acc.data_ptr<double>());
    check_launch(fn);
    tem_grad_s_kernel<scalar_t><<<pixels, 256, 0, stream>>>(
        f.data_ptr<scalar_t>(), go.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(),
        levels.data_ptr<scalar_t>(), ks.data_ptr<int>(), B, C, P, L, gs.data_ptr<scalar_t>(),
        contrib.data_ptr<double>());
    check_launch(fn);
    tem_row_hist_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
        nullptr, ks.data_ptr<int>(), nullptr, contrib.data_ptr<double>(), C, P, L, nb, chunk,
        part.data_ptr<double>());
    check_launch(fn);
    if (nb > 1) {
      sum_partials_kernel<<<sums, 256, 0, stream>>>(part.data_ptr<double>(), B, nb, L,
                                                    gl_acc.data_ptr<double>());
      check_launch(fn);
    }
  });
  return {gf_acc.to(f.scalar_type()), gs, gl_acc.view({B, L}).to(f.scalar_type())};
}

}  // namespace
}  // namespace cuda
}  // namespace texture
}  // namespace sstkd

TORCH_LIBRARY_IMPL(sstkd_ops, CUDA, m) {
  m.impl("texstat_qco", &sstkd::texture::cuda::qco_cuda);
  m.impl("texstat_qco_backward", &sstkd::texture::cuda::qco_backward_cuda);
  m.impl("texstat_qco_tem", &sstkd::texture::cuda::qco_tem_cuda);
  m.impl("texstat_qco_tem_backward", &sstkd::texture::cuda::qco_tem_backward_cuda);
}

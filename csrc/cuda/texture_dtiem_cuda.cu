// CUDA kernels of the DTIEM ops texstat_dtiem(_backward) (schemas in csrc/texture_stats.cpp;
// shared helpers in texture_stats_cuda.cuh); same semantics as csrc/cpu/texture_dtiem_cpu.cpp.
//
// One thread block per image: pixels are processed in chunks of kThreads, each thread stages
// its pixel's contributions in shared memory and owner threads accumulate them in staging order
// (no float atomics: bitwise reproducible). Extra memory: O(B*H*W + B*N*N).
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

// ----------------------------------------------------------------------------------- DTIEM

template <typename T>
__device__ void denoise_cdf(const T* h, int64_t N, double theta, T* hd, T* cdf, int64_t& amax,
                            T& c) {
  amax = 0;
  for (int64_t n = 1; n < N; ++n)
    if (h[n] > h[amax]) amax = n;
  c = static_cast<T>(theta) * h[amax];
  T excess = 0;
  for (int64_t n = 0; n < N; ++n)
    if (h[n] > c) excess += h[n] - c;
  T run = 0;
  for (int64_t n = 0; n < N; ++n) {
    hd[n] = (h[n] > c ? c : h[n]) + excess / static_cast<T>(N);
    run += hd[n];
    cdf[n] = run - hd[n] / T(2);
  }
}

struct Offsets {
  int64_t v[16];  // up to 8 (dy, dx) pairs
  int64_t n;
};

// One block per image. scratch: (B, N*N + 2N) float64; cdf: (B, N) of T.
template <typename T>
__global__ void dtiem_forward_kernel(const T* __restrict__ s_all, int64_t H, int64_t W,
                                     int64_t N, int64_t iters, double theta, Offsets offs,
                                     T* __restrict__ q_all, T* __restrict__ cooc_all,
                                     T* __restrict__ hist_all, T* __restrict__ lv_all,
                                     T* __restrict__ raw_all, T* __restrict__ cdf_all,
                                     double* __restrict__ scratch) {
  __shared__ int ent[kThreads * 4];
  __shared__ double val[kThreads * 4];
  __shared__ int64_t sidx[2 * kThreads];
  __shared__ double red[kThreads];
  const int64_t b = blockIdx.x, P = H * W, D = offs.n;
  const T* S = s_all + b * P;
  T* lv = lv_all + b * N;
  T* cdf = cdf_all + b * N;
  double* M = scratch + b * (N * N + 2 * N);
  double* sums = M + N * N;
  double* cnt = sums + N;
  double nbad = 0;
  for (int64_t p = threadIdx.x; p < P; p += blockDim.x) nbad += isfinite(S[p]) ? 0.0 : 1.0;
  if (block_sum(nbad, red) > 0) {  // NaN / Inf in the image: NaN outputs, no host round trip
    const T nan_v = static_cast<T>(nan(""));
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x) q_all[b * P + p] = nan_v;
    for (int64_t e = threadIdx.x; e < D * N * N; e += blockDim.x)
      cooc_all[b * D * N * N + e] = nan_v;
    for (int64_t k = threadIdx.x; k < N; k += blockDim.x)
      lv[k] = hist_all[b * N + k] = raw_all[b * N + k] = nan_v;
    return;
  }
  int64_t imin, imax;
  block_argminmax(S, P, imin, imax, sidx);
  const T lo = S[imin], hi = S[imax];
  for (int64_t k = threadIdx.x; k < N; k += blockDim.x)
    lv[k] = static_cast<T>(level_frac(k, N)) * (hi - lo) + lo;
  __syncthreads();
  for (int64_t it = 0; it < iters; ++it) {  // Lloyd-Max steps
    for (int64_t k = threadIdx.x; k < 2 * N; k += blockDim.x) sums[k] = 0;
    __syncthreads();
    for (int64_t c0 = 0; c0 < P; c0 += kThreads) {
      const int64_t p = c0 + threadIdx.x;
      for (int m = 0; m < 4; ++m) ent[threadIdx.x * 4 + m] = -1;
      if (p < P) {
        const int64_t k = nearest_level(S[p], lv, N);
        ent[threadIdx.x * 4] = static_cast<int>(k);
        val[threadIdx.x * 4] = S[p];
        ent[threadIdx.x * 4 + 1] = static_cast<int>(N + k);
        val[threadIdx.x * 4 + 1] = 1.0;
      }
      __syncthreads();
      owner_accumulate<4>(ent, val, sums);
      __syncthreads();
    }
    for (int64_t k = threadIdx.x; k < N; k += blockDim.x)
      if (cnt[k] > 0) lv[k] = static_cast<T>(sums[k] / cnt[k]);
    __syncthreads();
  }
  // histogram of the hat code
  for (int64_t k = threadIdx.x; k < N; k += blockDim.x) sums[k] = 0;
  __syncthreads();
  for (int64_t c0 = 0; c0 < P; c0 += kThreads) {
    const int64_t p = c0 + threadIdx.x;
    for (int m = 0; m < 4; ++m) ent[threadIdx.x * 4 + m] = -1;
    if (p < P) {
      if (N == 1) {
        ent[threadIdx.x * 4] = 0;
        val[threadIdx.x * 4] = 1.0;
      } else {
        int64_t k;
        T wt;
        bool inside;
        hat_code(S[p], lv, N, k, wt, inside);
        ent[threadIdx.x * 4] = static_cast<int>(k);
        val[threadIdx.x * 4] = double(T(1) - wt);
        ent[threadIdx.x * 4 + 1] = static_cast<int>(k + 1);
        val[threadIdx.x * 4 + 1] = double(wt);
      }
    }
    __syncthreads();
    owner_accumulate<4>(ent, val, sums);
    __syncthreads();
  }
  T* raw = raw_all + b * N;
  T* hd = hist_all + b * N;
  for (int64_t k = threadIdx.x; k < N; k += blockDim.x) raw[k] = static_cast<T>(sums[k] / double(P));
  __syncthreads();
  if (threadIdx.x == 0) {
    int64_t amax;
    T c;
    denoise_cdf(raw, N, theta, hd, cdf, amax, c);
  }
  __syncthreads();
  for (int64_t p = threadIdx.x; p < P; p += blockDim.x) {
    if (N == 1) {
      q_all[b * P + p] = cdf[0];
      continue;
    }
    int64_t k;
    T wt;
    bool inside;
    hat_code(S[p], lv, N, k, wt, inside);
    q_all[b * P + p] = (T(1) - wt) * cdf[k] + wt * cdf[k + 1];
  }
  // co-occurrence per offset
  for (int64_t d = 0; d < D; ++d) {
    const int64_t dy = offs.v[2 * d], dx = offs.v[2 * d + 1];
    const int64_t hh = H - (dy < 0 ? -dy : dy), ww = W - (dx < 0 ? -dx : dx);
    T* out = cooc_all + (b * D + d) * N * N;
    for (int64_t e = threadIdx.x; e < N * N; e += blockDim.x) M[e] = 0;
    __syncthreads();
    const int64_t npairs = hh > 0 && ww > 0 ? hh * ww : 0;
    const int64_t y0 = dy < 0 ? -dy : 0, x0 = dx < 0 ? -dx : 0;
    for (int64_t c0 = 0; c0 < npairs; c0 += kThreads) {
      const int64_t t = c0 + threadIdx.x;
      for (int m = 0; m < 4; ++m) ent[threadIdx.x * 4 + m] = -1;
      if (t < npairs) {
        const int64_t y = y0 + t / ww, x = x0 + t % ww;
        const int64_t i = y * W + x, j = (y + dy) * W + x + dx;
        if (N == 1) {
          ent[threadIdx.x * 4] = 0;
          val[threadIdx.x * 4] = 1.0;
        } else {
          int64_t ki, kj;
          T wi, wj;
          bool in_i, in_j;
          hat_code(S[i], lv, N, ki, wi, in_i);
          hat_code(S[j], lv, N, kj, wj, in_j);
          const double ai[2] = {double(T(1) - wi), double(wi)};
          const double aj[2] = {double(T(1) - wj), double(wj)};
          for (int u = 0; u < 2; ++u)
            for (int v = 0; v < 2; ++v) {
              ent[threadIdx.x * 4 + 2 * u + v] = static_cast<int>((ki + u) * N + kj + v);
              val[threadIdx.x * 4 + 2 * u + v] = ai[u] * aj[v];
            }
        }
      }
      __syncthreads();
      owner_accumulate<4>(ent, val, M);
      __syncthreads();
    }
    for (int64_t e = threadIdx.x; e < N * N; e += blockDim.x)
      out[e] = npairs > 0 ? static_cast<T>(M[e] / double(npairs)) : T(0);
    __syncthreads();
  }
}

// One block per image. scratch: (B, 3N) float64; hd_cdf: (B, 2N) of T.
template <typename T>
__global__ void dtiem_backward_kernel(const T* __restrict__ gq_all, const T* __restrict__ gm_all,
                                      const T* __restrict__ gh_all, const T* __restrict__ s_all,
                                      const T* __restrict__ lv_all, const T* __restrict__ raw_all,
                                      int64_t H, int64_t W, int64_t N, double theta, Offsets offs,
                                      double* __restrict__ scratch, T* __restrict__ hd_cdf,
                                      T* __restrict__ ds_all) {
  __shared__ int ent[kThreads * 2];
  __shared__ double val[kThreads * 2];
  const int64_t b = blockIdx.x, P = H * W, D = offs.n;
  const T* S = s_all + b * P;
  const T* lv = lv_all + b * N;
  const T* rh = raw_all + b * N;
  const T* dQ = gq_all + b * P;
  const T* dM = gm_all + b * D * N * N;
  double* dcdf = scratch + b * 3 * N;
  double* dh = dcdf + N;
  T* hd = hd_cdf + b * 2 * N;
  T* cdf = hd + N;
  T* ds = ds_all + b * P;
  for (int64_t k = threadIdx.x; k < N; k += blockDim.x) dcdf[k] = 0;
  __syncthreads();
  for (int64_t c0 = 0; c0 < P; c0 += kThreads) {  // reduction pass: sum_p dQ_p E_n(p)
    const int64_t p = c0 + threadIdx.x;
    ent[threadIdx.x * 2] = -1;
    ent[threadIdx.x * 2 + 1] = -1;
    if (p < P) {
      int64_t k;
      T wt;
      bool inside;
      hat_code(S[p], lv, N, k, wt, inside);
      ent[threadIdx.x * 2] = static_cast<int>(k);
      val[threadIdx.x * 2] = double(dQ[p]) * double(T(1) - wt);
      ent[threadIdx.x * 2 + 1] = static_cast<int>(k + 1);
      val[threadIdx.x * 2 + 1] = double(dQ[p]) * double(wt);
    }
    __syncthreads();
    owner_accumulate<2>(ent, val, dcdf);
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    int64_t amax;
    T c;
    denoise_cdf(rh, N, theta, hd, cdf, amax, c);
    double suffix = 0, total = 0, dclip = 0;
    int64_t nover = 0;
    for (int64_t n = N - 1; n >= 0; --n) {
      suffix += dcdf[n];
      dh[n] = double(gh_all[b * N + n]) + suffix - dcdf[n] / 2;
      total += dh[n];
    }
    for (int64_t n = 0; n < N; ++n)
      if (rh[n] > c) {
        dclip += dh[n];
        ++nover;
        dh[n] = total / double(N);
      }
    dclip -= double(nover) / double(N) * total;
    dh[amax] += theta * dclip;
  }
  __syncthreads();
  for (int64_t p = threadIdx.x; p < P; p += blockDim.x) {  // per-pixel pass
    int64_t k;
    T wt;
    bool inside;
    hat_code(S[p], lv, N, k, wt, inside);
    if (!inside) {
      ds[p] = T(0);
      continue;
    }
    const int64_t y = p / W, x = p % W;
    double dE0 = double(dQ[p]) * double(cdf[k]) + dh[k] / double(P);
    double dE1 = double(dQ[p]) * double(cdf[k + 1]) + dh[k + 1] / double(P);
    for (int64_t d = 0; d < D; ++d) {
      const int64_t dy = offs.v[2 * d], dx = offs.v[2 * d + 1];
      const int64_t hh = H - (dy < 0 ? -dy : dy), ww = W - (dx < 0 ? -dx : dx);
      if (hh <= 0 || ww <= 0) continue;
      const double inv = 1.0 / double(hh * ww);
      const T* G = dM + d * N * N;
      const int64_t yn = y + dy, xn = x + dx, yp = y - dy, xp = x - dx;
      if (yn >= 0 && yn < H && xn >= 0 && xn < W) {
        int64_t kq;
        T wq;
        bool iq;
        hat_code(S[yn * W + xn], lv, N, kq, wq, iq);
        const double a0 = double(T(1) - wq), a1 = double(wq);
        dE0 += (G[k * N + kq] * a0 + G[k * N + kq + 1] * a1) * inv;
        dE1 += (G[(k + 1) * N + kq] * a0 + G[(k + 1) * N + kq + 1] * a1) * inv;
      }
      if (yp >= 0 && yp < H && xp >= 0 && xp < W) {
        int64_t kq;
        T wq;
        bool iq;
        hat_code(S[yp * W + xp], lv, N, kq, wq, iq);
        const double a0 = double(T(1) - wq), a1 = double(wq);
        dE0 += (a0 * G[kq * N + k] + a1 * G[(kq + 1) * N + k]) * inv;
        dE1 += (a0 * G[kq * N + k + 1] + a1 * G[(kq + 1) * N + k + 1]) * inv;
      }
    }
    ds[p] = static_cast<T>((dE1 - dE0) / double(lv[k + 1] - lv[k]));
  }
}

constexpr size_t kMaxOffsetPairs = 8;  // capacity of Offsets

Offsets make_offsets(at::IntArrayRef offsets) {
  Offsets o{};
  o.n = static_cast<int64_t>(offsets.size()) / 2;
  for (size_t i = 0; i < offsets.size(); ++i) o.v[i] = offsets[i];
  return o;
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> dtiem_cuda(const Tensor& s_, int64_t N,
                                                              int64_t iters, double theta,
                                                              at::IntArrayRef offsets) {
  constexpr const char* fn = "texstat_dtiem";
  dtiem_args(s_, N, iters, theta, offsets, kMaxOffsetPairs, fn, /*cuda=*/true);
  const Offsets offs = make_offsets(offsets);
  const DeviceScope scope(s_);
  const Tensor s = s_.contiguous();
  const int64_t B = s.size(0), H = s.size(1), W = s.size(2), D = offs.n;
  const unsigned images = grid_blocks(B, 1, fn);
  Tensor q = at::empty({B, H, W}, s.options());
  Tensor cooc = at::empty({B, D, N, N}, s.options());
  Tensor hist = at::empty({B, N}, s.options());
  Tensor levels = at::empty({B, N}, s.options());
  Tensor raw = at::empty({B, N}, s.options());
  Tensor cdf = at::empty({B, N}, s.options());
  if (images == 0) return {q, cooc, hist, levels, raw};
  Tensor scratch = at::empty({B, N * N + 2 * N}, s.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "texstat_dtiem_cuda", [&] {
    dtiem_forward_kernel<scalar_t><<<images, kThreads, 0, current_stream()>>>(
        s.data_ptr<scalar_t>(), H, W, N, iters, theta, offs, q.data_ptr<scalar_t>(),
        cooc.data_ptr<scalar_t>(), hist.data_ptr<scalar_t>(), levels.data_ptr<scalar_t>(),
        raw.data_ptr<scalar_t>(), cdf.data_ptr<scalar_t>(), scratch.data_ptr<double>());
    check_launch(fn);
  });
  return {q, cooc, hist, levels, raw};
}

Tensor dtiem_backward_cuda(const Tensor& grad_q, const Tensor& grad_cooc,
                           const Tensor& grad_hist, const Tensor& s_, const Tensor& levels_,
                           const Tensor& raw_, double theta, at::IntArrayRef offsets) {
  constexpr const char* fn = "texstat_dtiem_backward";
  dtiem_backward_args(grad_q, grad_cooc, grad_hist, s_, levels_, raw_, theta, offsets,
                      kMaxOffsetPairs, fn, /*cuda=*/true);
  const Offsets offs = make_offsets(offsets);
  const DeviceScope scope(s_);
  const Tensor s = s_.contiguous(), levels = levels_.contiguous(), raw = raw_.contiguous();
  const Tensor gq = grad_q.contiguous(), gm = grad_cooc.contiguous();
  const Tensor gh = grad_hist.contiguous();
  const int64_t B = s.size(0), H = s.size(1), W = s.size(2), N = levels.size(1);
  const unsigned images = grid_blocks(B, 1, fn);
  if (N == 1 || images == 0) return at::zeros_like(s);  // one level: the codes are constant
  Tensor ds = at::empty_like(s);
  Tensor scratch = at::empty({B, 3 * N}, s.options().dtype(at::kDouble));
  Tensor hd_cdf = at::empty({B, 2 * N}, s.options());
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "texstat_dtiem_backward_cuda", [&] {
    dtiem_backward_kernel<scalar_t><<<images, kThreads, 0, current_stream()>>>(
        gq.data_ptr<scalar_t>(), gm.data_ptr<scalar_t>(), gh.data_ptr<scalar_t>(),
        s.data_ptr<scalar_t>(), levels.data_ptr<scalar_t>(), raw.data_ptr<scalar_t>(), H, W, N,
        theta, offs, scratch.data_ptr<double>(), hd_cdf.data_ptr<scalar_t>(),
        ds.data_ptr<scalar_t>());
    check_launch(fn);
  });
  return ds;
}

}  // namespace
}  // namespace sstkd_texstat_cuda

TORCH_LIBRARY_IMPL(sstkd_ops, CUDA, m) {
  m.impl("texstat_dtiem", &sstkd_texstat_cuda::dtiem_cuda);
  m.impl("texstat_dtiem_backward", &sstkd_texstat_cuda::dtiem_backward_cuda);
}

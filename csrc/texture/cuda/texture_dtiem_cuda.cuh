// Device and host helpers shared by the CUDA DTIEM kernels (texture_dtiem_cuda.cu: forward,
// texture_dtiem_backward_cuda.cu: backward; schemas in csrc/texture/texture_stats.cpp):
// denoising and CDF of one histogram, the offsets and the per-block partial sums over pixels
// that both directions run, and the importance weights.
//
// Importance weights (optional, the same rules as the CPU kernels): weight_sums_kernel sums
// them per image and over the first pixels of each offset's pairs, effective_weights_kernel
// replaces an image's weights by ones when they sum to zero, and the histogram / co-occurrence
// passes weight each pixel (each pair's first pixel) by them and divide by those sums. Their
// values are not checked here (that would read the device on the host): the Python entry
// point checks them. Without weights the kernels run the unweighted arithmetic unchanged.
//
// Includes only ATen, c10 and c10/cuda headers (see scripts/check_cuda_sources.sh).
#pragma once
#include "texture_stats_cuda.cuh"

#include "../texture_stats_math.h"
#include <ATen/ATen.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <optional>

namespace sstkd { namespace texture { namespace cuda {
namespace dtiem {

using namespace ::sstkd::texture::math;  // NOLINT: the shared per-value rules
using namespace detail;              // NOLINT: the shared CUDA helpers (texture_stats_cuda.cuh)

using at::Tensor;

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

// Every pass over pixels is split: block b * nb + j takes pixels [j * chunk, ...) of image b
// (pixel pairs of one offset for the co-occurrence) and writes its partial sums; the partials
// are added in block order (sum_partials_kernel). Per-image steps on N values run one thread
// per image. An image holding NaN / Inf gets NaN outputs (flag on the device).

// Partial sums over each block's pixels: Lloyd-Max step (lloyd: sum of S and count per nearest
// level, (2N) entries) or hat-code histogram ((N) entries, each code weighted by wq[p] when
// wq is given: the forward's importance weights, or the backward's d CDF).
template <typename T>
__global__ void pixel_partial_kernel(const T* __restrict__ s_all, const T* __restrict__ wq_all,
                                     int64_t P, int64_t N, bool lloyd, int64_t nb, int64_t chunk,
                                     const T* __restrict__ lv_all, const int* __restrict__ bad,
                                     double* __restrict__ part) {
  __shared__ int ent[kThreads * 2];
  __shared__ double val[kThreads * 2];
  const int64_t b = blockIdx.x / nb, j = blockIdx.x % nb, K = lloyd ? 2 * N : N;
  if (bad != nullptr && bad[b]) return;  // NaN outputs: this image's partials are ignored
  const int64_t p0 = j * chunk, p1 = p0 + chunk < P ? p0 + chunk : P;
  const T* S = s_all + b * P;
  const T* lv = lv_all + b * N;
  double* acc = part + blockIdx.x * K;
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) acc[k] = 0;
  __syncthreads();
  for (int64_t c0 = p0; c0 < p1; c0 += kThreads) {
    const int64_t p = c0 + threadIdx.x;
    ent[threadIdx.x * 2] = -1;
    ent[threadIdx.x * 2 + 1] = -1;
    if (p < p1) {
      if (lloyd) {
        const int64_t k = nearest_level(S[p], lv, N);
        ent[threadIdx.x * 2] = static_cast<int>(k);
        val[threadIdx.x * 2] = S[p];
        ent[threadIdx.x * 2 + 1] = static_cast<int>(N + k);
        val[threadIdx.x * 2 + 1] = 1.0;
      } else if (N == 1) {
        ent[threadIdx.x * 2] = 0;
        val[threadIdx.x * 2] = wq_all != nullptr ? double(wq_all[b * P + p]) : 1.0;
      } else {
        int64_t k;
        T wt;
        bool inside;
        hat_code(S[p], lv, N, k, wt, inside);
        const double a = wq_all != nullptr ? double(wq_all[b * P + p]) : 1.0;
        ent[threadIdx.x * 2] = static_cast<int>(k);
        val[threadIdx.x * 2] = a * double(T(1) - wt);
        ent[threadIdx.x * 2 + 1] = static_cast<int>(k + 1);
        val[threadIdx.x * 2 + 1] = a * double(wt);
      }
    }
    __syncthreads();
    owner_accumulate<2>(ent, val, acc);
    __syncthreads();
  }
}

// Raw importance-weight sums, block per (image, slot), slots 1 + D per image: slot 0 over all
// pixels, slot 1 + d over the first pixels of the pairs of offset d (0 without pairs). Thread
// partial sums in a fixed stride, then block_sum's fixed tree: bitwise reproducible.
template <typename T>
__global__ void weight_sums_kernel(const T* __restrict__ w_all, int64_t H, int64_t W,
                                   Offsets offs, double* __restrict__ sums) {
  __shared__ double red[kThreads];
  const int64_t slots = 1 + offs.n, b = blockIdx.x / slots, slot = blockIdx.x % slots;
  int64_t y0 = 0, x0 = 0, hh = H, ww = W;
  if (slot > 0) {
    const int64_t dy = offs.v[2 * (slot - 1)], dx = offs.v[2 * (slot - 1) + 1];
    hh = H - (dy < 0 ? -dy : dy);
    ww = W - (dx < 0 ? -dx : dx);
    y0 = dy < 0 ? -dy : 0;
    x0 = dx < 0 ? -dx : 0;
  }
  const int64_t n = hh > 0 && ww > 0 ? hh * ww : 0;
  const T* w = w_all + b * H * W;
  double acc = 0;
  for (int64_t t = threadIdx.x; t < n; t += blockDim.x)
    acc += double(w[(y0 + t / ww) * W + x0 + t % ww]);
  const double total = block_sum(acc, red);
  if (threadIdx.x == 0) sums[blockIdx.x] = total;
}

// Thread per pixel: the weights DTIEM counts with, ones for an image whose weights sum to 0.
template <typename T>
__global__ void effective_weights_kernel(const T* __restrict__ w_all,
                                         const double* __restrict__ sums, int64_t B, int64_t P,
                                         int64_t slots, T* __restrict__ out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= B * P) return;
  out[i] = sums[(i / P) * slots] > 0 ? w_all[i] : T(1);
}

// Normaliser of slot `slot` of image b (weight_sums_kernel): the weight sum, or `count` (the
// pixel or pair count) for an image counted with uniform weights.
__device__ inline double weight_norm(const double* sums, int64_t b, int64_t slots, int64_t slot,
                                     double count) {
  return sums[b * slots] > 0 ? sums[b * slots + slot] : count;
}

inline constexpr size_t kMaxOffsetPairs = 8;  // capacity of Offsets

inline Offsets make_offsets(at::IntArrayRef offsets) {
  Offsets o{};
  o.n = static_cast<int64_t>(offsets.size()) / 2;
  for (size_t i = 0; i < offsets.size(); ++i) o.v[i] = offsets[i];
  return o;
}

// Importance weights of a call: raw sums (B, 1 + D) and effective weights (B, H, W) on the
// stream; pointers stay null without weights.
struct Weights {
  Tensor sums, eff;
  template <typename T>
  const T* eff_ptr() const { return eff.defined() ? eff.data_ptr<T>() : nullptr; }
  const double* sums_ptr() const { return sums.defined() ? sums.data_ptr<double>() : nullptr; }
};

template <typename T>
Weights prepare_weights(const std::optional<Tensor>& weights, const Offsets& offs, int64_t B,
                        int64_t H, int64_t W, cudaStream_t stream, const char* fn) {
  Weights out;
  if (!weights.has_value() || B == 0) return out;
  const Tensor w = weights->contiguous();
  const int64_t slots = 1 + offs.n;
  out.sums = at::empty({B, slots}, w.options().dtype(at::kDouble));
  out.eff = at::empty({B, H, W}, w.options());
  weight_sums_kernel<T><<<grid_blocks(B * slots, 1, fn), kThreads, 0, stream>>>(
      w.data_ptr<T>(), H, W, offs, out.sums.data_ptr<double>());
  check_launch(fn);
  effective_weights_kernel<T><<<grid_blocks(B * H * W, 256, fn), 256, 0, stream>>>(
      w.data_ptr<T>(), out.sums.data_ptr<double>(), B, H * W, slots, out.eff.data_ptr<T>());
  check_launch(fn);
  return out;
}

}  // namespace dtiem
}  // namespace cuda
}  // namespace texture
}  // namespace sstkd

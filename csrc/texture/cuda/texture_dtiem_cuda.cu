// CUDA kernels of the DTIEM ops texstat_dtiem(_backward) (schemas in csrc/texture/texture_stats.cpp;
// shared helpers in texture_stats_cuda.cuh); same semantics as csrc/texture/cpu/texture_dtiem_cpu.cpp.
//
// Each pass over pixels is split across blocks of kPixelsPerBlock pixels: each thread stages its
// pixel's contributions in shared memory, owner threads accumulate them in staging order into
// the block's partial sums, and the partials are added in block order (no float atomics:
// bitwise reproducible); per-pixel maps run a thread per pixel. Extra memory:
// O(B*H*W + B*N*N), plus the per-block partials (at most 256 MiB).
//
// Importance weights (optional, the same rules as the CPU kernels): weight_sums_kernel sums
// them per image and over the first pixels of each offset's pairs, effective_weights_kernel
// replaces an image's weights by ones when they sum to zero, and the histogram / co-occurrence
// passes weight each pixel (each pair's first pixel) by them and divide by those sums. Their
// values are not checked here (that would read the device on the host): the Python entry
// point checks them. Without weights the kernels run the unweighted arithmetic unchanged.
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

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <tuple>

namespace sstkd { namespace texture { namespace cuda {
namespace {

using namespace ::sstkd::texture::math;  // NOLINT: the shared per-value rules
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

// Lloyd-Max update, thread per (image, level): a level without pixels stays.
template <typename T>
__global__ void lloyd_update_kernel(const double* __restrict__ sums, int64_t B, int64_t N,
                                    const int* __restrict__ bad, T* __restrict__ lv_all) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= B * N) return;
  const int64_t b = i / N, k = i % N;
  const double cnt = sums[b * 2 * N + N + k];
  if (!bad[b] && cnt > 0) lv_all[i] = static_cast<T>(sums[b * 2 * N + k] / cnt);
}

// Thread per image: histogram, denoised histogram and CDF (NaN for a flagged image); wsums:
// the importance-weight sums (weight_sums_kernel, `slots` per image) or nullptr.
template <typename T>
__global__ void dtiem_hist_kernel(const double* __restrict__ sums, int64_t B, int64_t P,
                                  int64_t N, double theta, const int* __restrict__ bad,
                                  const double* __restrict__ wsums, int64_t slots,
                                  T* __restrict__ raw_all, T* __restrict__ hist_all,
                                  T* __restrict__ cdf_all, T* __restrict__ lv_all) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b >= B) return;
  T* raw = raw_all + b * N;
  if (bad[b]) {
    const T nan_v = static_cast<T>(nan(""));
    for (int64_t k = 0; k < N; ++k) raw[k] = hist_all[b * N + k] = lv_all[b * N + k] = nan_v;
    return;
  }
  const double norm = wsums != nullptr ? weight_norm(wsums, b, slots, 0, double(P)) : double(P);
  for (int64_t k = 0; k < N; ++k) raw[k] = static_cast<T>(sums[b * N + k] / norm);
  int64_t amax;
  T c;
  denoise_cdf(raw, N, theta, hist_all + b * N, cdf_all + b * N, amax, c);
}

// Thread per pixel: the equalised map Q = sum_n E_n CDF_n.
template <typename T>
__global__ void dtiem_q_kernel(const T* __restrict__ s_all, int64_t B, int64_t P, int64_t N,
                               const T* __restrict__ lv_all, const T* __restrict__ cdf_all,
                               const int* __restrict__ bad, T* __restrict__ q_all) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= B * P) return;
  const int64_t b = i / P;
  const T* cdf = cdf_all + b * N;
  if (bad[b]) {
    q_all[i] = static_cast<T>(nan(""));
  } else if (N == 1) {
    q_all[i] = cdf[0];
  } else {
    int64_t k;
    T wt;
    bool inside;
    hat_code(s_all[i], lv_all + b * N, N, k, wt, inside);
    q_all[i] = (T(1) - wt) * cdf[k] + wt * cdf[k + 1];
  }
}

// Partial co-occurrence of each block's pixel pairs: block (b * D + d) * nb + j; each pair
// weighted by the effective weight of its first pixel when weff is given.
template <typename T>
__global__ void cooc_partial_kernel(const T* __restrict__ s_all, const T* __restrict__ weff,
                                    int64_t H, int64_t W, int64_t N, Offsets offs, int64_t nb,
                                    int64_t chunk, const T* __restrict__ lv_all,
                                    const int* __restrict__ bad, double* __restrict__ part) {
  __shared__ int ent[kThreads * 4];
  __shared__ double val[kThreads * 4];
  const int64_t D = offs.n, bd = blockIdx.x / nb, j = blockIdx.x % nb, b = bd / D, d = bd % D;
  if (bad[b]) return;
  const int64_t P = H * W;
  const T* S = s_all + b * P;
  const T* lv = lv_all + b * N;
  double* M = part + blockIdx.x * N * N;
  const int64_t dy = offs.v[2 * d], dx = offs.v[2 * d + 1];
  const int64_t hh = H - (dy < 0 ? -dy : dy), ww = W - (dx < 0 ? -dx : dx);
  const int64_t npairs = hh > 0 && ww > 0 ? hh * ww : 0;
  const int64_t y0 = dy < 0 ? -dy : 0, x0 = dx < 0 ? -dx : 0;
  const int64_t t0 = j * chunk, t1 = t0 + chunk < npairs ? t0 + chunk : npairs;
  for (int64_t e = threadIdx.x; e < N * N; e += blockDim.x) M[e] = 0;
  __syncthreads();
  for (int64_t c0 = t0; c0 < t1; c0 += kThreads) {
    const int64_t t = c0 + threadIdx.x;
    for (int m = 0; m < 4; ++m) ent[threadIdx.x * 4 + m] = -1;
    if (t < t1) {
      const int64_t y = y0 + t / ww, x = x0 + t % ww;
      const int64_t i = y * W + x, jj = (y + dy) * W + x + dx;
      if (N == 1) {
        ent[threadIdx.x * 4] = 0;
        val[threadIdx.x * 4] = weff != nullptr ? double(weff[b * P + i]) : 1.0;
      } else {
        int64_t ki, kj;
        T wi, wj;
        bool in_i, in_j;
        hat_code(S[i], lv, N, ki, wi, in_i);
        hat_code(S[jj], lv, N, kj, wj, in_j);
        double ai[2] = {double(T(1) - wi), double(wi)};
        const double aj[2] = {double(T(1) - wj), double(wj)};
        if (weff != nullptr) {
          const double a = double(weff[b * P + i]);
          ai[0] *= a;
          ai[1] *= a;
        }
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
}

// Thread per (image, offset, entry): co-occurrence = summed pairs / pair count (pair weight
// sum with wsums; 0 when it is 0).
template <typename T>
__global__ void cooc_finish_kernel(const double* __restrict__ M, int64_t B, int64_t H, int64_t W,
                                   int64_t N, Offsets offs, const int* __restrict__ bad,
                                   const double* __restrict__ wsums, T* __restrict__ cooc) {
  const int64_t D = offs.n, NN = N * N;
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= B * D * NN) return;
  const int64_t b = i / (D * NN), d = (i / NN) % D;
  const int64_t dy = offs.v[2 * d], dx = offs.v[2 * d + 1];
  const int64_t hh = H - (dy < 0 ? -dy : dy), ww = W - (dx < 0 ? -dx : dx);
  const int64_t npairs = hh > 0 && ww > 0 ? hh * ww : 0;
  const double norm = wsums != nullptr && npairs > 0
                          ? weight_norm(wsums, b, 1 + D, 1 + d, double(npairs))
                          : double(npairs);
  if (bad[b]) cooc[i] = static_cast<T>(nan(""));
  else cooc[i] = norm > 0 ? static_cast<T>(M[i] / norm) : T(0);
}

// Backward, thread per image: through the CDF, the clip-and-redistribute and the histogram.
// dcdf (B, N) = sum_p dQ_p E_n(p); writes dh (B, N) and the denoised histogram / CDF (B, 2N).
template <typename T>
__global__ void dtiem_backward_hist_kernel(const double* __restrict__ dcdf_all,
                                           const T* __restrict__ gh_all,
                                           const T* __restrict__ raw_all, int64_t B, int64_t N,
                                           double theta, double* __restrict__ dh_all,
                                           T* __restrict__ hd_cdf) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b >= B) return;
  const double* dcdf = dcdf_all + b * N;
  const T* rh = raw_all + b * N;
  double* dh = dh_all + b * N;
  T* hd = hd_cdf + b * 2 * N;
  int64_t amax;
  T c;
  denoise_cdf(rh, N, theta, hd, hd + N, amax, c);
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

// Backward, thread per pixel: d loss / d s_p through its hat code (zero when clamped); with
// importance weights (weff, wsums), the histogram and co-occurrence terms carry the weight of
// the pixel (of the pair's first pixel) over the weight sums instead of 1 over the counts.
template <typename T>
__global__ void dtiem_backward_pixel_kernel(const T* __restrict__ gq_all,
                                            const T* __restrict__ gm_all,
                                            const T* __restrict__ s_all,
                                            const T* __restrict__ lv_all,
                                            const double* __restrict__ dh_all,
                                            const T* __restrict__ hd_cdf,
                                            const T* __restrict__ weff,
                                            const double* __restrict__ wsums, int64_t B,
                                            int64_t H, int64_t W, int64_t N, Offsets offs,
                                            T* __restrict__ ds_all) {
  const int64_t P = H * W, D = offs.n;
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= B * P) return;
  const int64_t b = i / P, p = i % P;
  const T* S = s_all + b * P;
  const T* lv = lv_all + b * N;
  const T* dQ = gq_all + b * P;
  const T* dM = gm_all + b * D * N * N;
  const double* dh = dh_all + b * N;
  const T* cdf = hd_cdf + b * 2 * N + N;
  int64_t k;
  T wt;
  bool inside;
  hat_code(S[p], lv, N, k, wt, inside);
  if (!inside) {
    ds_all[i] = T(0);
    return;
  }
  const int64_t y = p / W, x = p % W;
  const T* A = weff != nullptr ? weff + b * P : nullptr;
  double dE0, dE1;
  if (A == nullptr) {
    dE0 = double(dQ[p]) * double(cdf[k]) + dh[k] / double(P);
    dE1 = double(dQ[p]) * double(cdf[k + 1]) + dh[k + 1] / double(P);
  } else {
    const double hn = weight_norm(wsums, b, 1 + D, 0, double(P));
    dE0 = double(dQ[p]) * double(cdf[k]) + dh[k] * double(A[p]) / hn;
    dE1 = double(dQ[p]) * double(cdf[k + 1]) + dh[k + 1] * double(A[p]) / hn;
  }
  for (int64_t d = 0; d < D; ++d) {
    const int64_t dy = offs.v[2 * d], dx = offs.v[2 * d + 1];
    const int64_t hh = H - (dy < 0 ? -dy : dy), ww = W - (dx < 0 ? -dx : dx);
    if (hh <= 0 || ww <= 0) continue;
    double inv = 1.0 / double(hh * ww);
    if (A != nullptr) {
      const double pw = weight_norm(wsums, b, 1 + D, 1 + d, double(hh * ww));
      if (!(pw > 0)) continue;  // pairs of zero weight: M = 0
      inv = 1.0 / pw;
    }
    const T* G = dM + d * N * N;
    const int64_t yn = y + dy, xn = x + dx, yp = y - dy, xp = x - dx;
    if (yn >= 0 && yn < H && xn >= 0 && xn < W) {  // p is the first of a pair
      int64_t kq;
      T wq;
      bool iq;
      hat_code(S[yn * W + xn], lv, N, kq, wq, iq);
      const double a0 = double(T(1) - wq), a1 = double(wq);
      const double f = A != nullptr ? double(A[p]) * inv : inv;
      dE0 += (G[k * N + kq] * a0 + G[k * N + kq + 1] * a1) * f;
      dE1 += (G[(k + 1) * N + kq] * a0 + G[(k + 1) * N + kq + 1] * a1) * f;
    }
    if (yp >= 0 && yp < H && xp >= 0 && xp < W) {  // p is the second of a pair
      int64_t kq;
      T wq;
      bool iq;
      hat_code(S[yp * W + xp], lv, N, kq, wq, iq);
      const double a0 = double(T(1) - wq), a1 = double(wq);
      const double f = A != nullptr ? double(A[yp * W + xp]) * inv : inv;
      dE0 += (a0 * G[kq * N + k] + a1 * G[(kq + 1) * N + k]) * f;
      dE1 += (a0 * G[kq * N + k + 1] + a1 * G[(kq + 1) * N + k + 1]) * f;
    }
  }
  ds_all[i] = static_cast<T>((dE1 - dE0) / double(lv[k + 1] - lv[k]));
}

constexpr size_t kMaxOffsetPairs = 8;  // capacity of Offsets

Offsets make_offsets(at::IntArrayRef offsets) {
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

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> dtiem_cuda(
    const Tensor& s_, int64_t N, int64_t iters, double theta, at::IntArrayRef offsets,
    const std::optional<Tensor>& weights) {
  constexpr const char* fn = "texstat_dtiem";
  dtiem_args(s_, N, iters, theta, offsets, weights, kMaxOffsetPairs, fn, /*cuda=*/true);
  const Offsets offs = make_offsets(offsets);
  const DeviceScope scope(s_);
  const Tensor s = s_.contiguous();
  const int64_t B = s.size(0), H = s.size(1), W = s.size(2), P = H * W, D = offs.n;
  Tensor q = at::empty({B, H, W}, s.options());
  Tensor cooc = at::empty({B, D, N, N}, s.options());
  Tensor hist = at::empty({B, N}, s.options());
  Tensor levels = at::empty({B, N}, s.options());
  Tensor raw = at::empty({B, N}, s.options());
  if (B == 0) return {q, cooc, hist, levels, raw};
  int64_t max_pairs = 0;  // pairs of the offset with the most pairs
  for (int64_t d = 0; d < D; ++d) {
    const int64_t hh = H - std::abs(offs.v[2 * d]), ww = W - std::abs(offs.v[2 * d + 1]);
    if (hh > 0 && ww > 0) max_pairs = std::max(max_pairs, hh * ww);
  }
  const int64_t nb_x = split_blocks(P, B, 0), chunk_x = ceil_div(P, nb_x);
  const int64_t nb = split_blocks(P, B, 2 * N), chunk = ceil_div(P, nb);
  const int64_t nb_m = split_blocks(max_pairs, B * D, N * N);
  const int64_t chunk_m = ceil_div(std::max<int64_t>(max_pairs, 1), nb_m);
  const unsigned images = grid_blocks(B, 1, fn), image_threads = grid_blocks(B, 128, fn);
  const unsigned grid_x = grid_blocks(B * nb_x, 1, fn), grid = grid_blocks(B * nb, 1, fn);
  const unsigned grid_m = grid_blocks(B * D * nb_m, 1, fn);
  const unsigned pixels = grid_blocks(B * P, 256, fn), levels_grid = grid_blocks(B * N, 256, fn);
  const unsigned sums_l = grid_blocks(B * 2 * N, 256, fn);
  const unsigned sums_m = grid_blocks(B * D * N * N, 256, fn);
  const auto dopt = s.options().dtype(at::kDouble);
  Tensor part_idx = at::empty({B * nb_x, 2}, s.options().dtype(at::kLong));
  Tensor part_bad = at::empty({B * nb_x}, s.options().dtype(at::kInt));
  Tensor extrema = at::empty({B, 2}, s.options().dtype(at::kLong));
  Tensor bad = at::empty({B}, s.options().dtype(at::kInt));
  Tensor part = at::empty({B * nb, 2 * N}, dopt);
  Tensor sums = at::empty({B, 2 * N}, dopt);
  Tensor part_m = D > 0 ? at::empty({B * D * nb_m, N * N}, dopt) : at::empty({0}, dopt);
  Tensor M = nb_m > 1 && D > 0 ? at::empty({B * D, N * N}, dopt) : part_m;
  Tensor cdf = at::empty({B, N}, s.options());
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "texstat_dtiem_cuda", [&] {
    const scalar_t* S = s.data_ptr<scalar_t>();
    scalar_t* lv = levels.data_ptr<scalar_t>();
    const int* flag = bad.data_ptr<int>();
    const Weights wts = prepare_weights<scalar_t>(weights, offs, B, H, W, stream, fn);
    const scalar_t* A = wts.eff_ptr<scalar_t>();
    extrema_partial_kernel<scalar_t><<<grid_x, kThreads, 0, stream>>>(
        S, P, nb_x, chunk_x, part_idx.data_ptr<int64_t>(), part_bad.data_ptr<int>());
    check_launch(fn);
    stl_levels_kernel<scalar_t><<<images, kThreads, 0, stream>>>(
        S, P, N, nb_x, part_idx.data_ptr<int64_t>(), part_bad.data_ptr<int>(), lv,
        extrema.data_ptr<int64_t>(), bad.data_ptr<int>());
    check_launch(fn);
    // (B, 2N) sums of a pass; the partials are read in place when one block takes an image
    const auto pass = [&](bool lloyd) -> const double* {
      const int64_t K = lloyd ? 2 * N : N;
      pixel_partial_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
          S, lloyd ? nullptr : A, P, N, lloyd, nb, chunk, lv, flag, part.data_ptr<double>());
      check_launch(fn);
      if (nb == 1) return part.data_ptr<double>();
      sum_partials_kernel<<<lloyd ? sums_l : grid_blocks(B * N, 256, fn), 256, 0, stream>>>(
          part.data_ptr<double>(), B, nb, K, sums.data_ptr<double>());
      check_launch(fn);
      return sums.data_ptr<double>();
    };
    for (int64_t it = 0; it < iters; ++it) {  // Lloyd-Max steps
      const double* lsums = pass(true);
      lloyd_update_kernel<scalar_t><<<levels_grid, 256, 0, stream>>>(lsums, B, N, flag, lv);
      check_launch(fn);
    }
    const double* hsums = pass(false);
    dtiem_hist_kernel<scalar_t><<<image_threads, 128, 0, stream>>>(
        hsums, B, P, N, theta, flag, wts.sums_ptr(), 1 + D, raw.data_ptr<scalar_t>(),
        hist.data_ptr<scalar_t>(), cdf.data_ptr<scalar_t>(), lv);
    check_launch(fn);
    dtiem_q_kernel<scalar_t><<<pixels, 256, 0, stream>>>(S, B, P, N, lv,
                                                         cdf.data_ptr<scalar_t>(), flag,
                                                         q.data_ptr<scalar_t>());
    check_launch(fn);
    if (D > 0) {
      cooc_partial_kernel<scalar_t><<<grid_m, kThreads, 0, stream>>>(
          S, A, H, W, N, offs, nb_m, chunk_m, lv, flag, part_m.data_ptr<double>());
      check_launch(fn);
      if (nb_m > 1) {
        sum_partials_kernel<<<sums_m, 256, 0, stream>>>(part_m.data_ptr<double>(), B * D, nb_m,
                                                        N * N, M.data_ptr<double>());
        check_launch(fn);
      }
      cooc_finish_kernel<scalar_t><<<sums_m, 256, 0, stream>>>(
          M.data_ptr<double>(), B, H, W, N, offs, flag, wts.sums_ptr(),
          cooc.data_ptr<scalar_t>());
      check_launch(fn);
    }
  });
  return {q, cooc, hist, levels, raw};
}

Tensor dtiem_backward_cuda(const Tensor& grad_q, const Tensor& grad_cooc,
                           const Tensor& grad_hist, const Tensor& s_, const Tensor& levels_,
                           const Tensor& raw_, double theta, at::IntArrayRef offsets,
                           const std::optional<Tensor>& weights) {
  constexpr const char* fn = "texstat_dtiem_backward";
  dtiem_backward_args(grad_q, grad_cooc, grad_hist, s_, levels_, raw_, theta, offsets, weights,
                      kMaxOffsetPairs, fn, /*cuda=*/true);
  const Offsets offs = make_offsets(offsets);
  const DeviceScope scope(s_);
  const Tensor s = s_.contiguous(), levels = levels_.contiguous(), raw = raw_.contiguous();
  const Tensor gq = grad_q.contiguous(), gm = grad_cooc.contiguous();
  const Tensor gh = grad_hist.contiguous();
  const int64_t B = s.size(0), H = s.size(1), W = s.size(2), P = H * W, N = levels.size(1);
  if (N == 1 || B == 0) return at::zeros_like(s);  // one level: the codes are constant
  const int64_t nb = split_blocks(P, B, N), chunk = ceil_div(P, nb);
  const unsigned grid = grid_blocks(B * nb, 1, fn), sums = grid_blocks(B * N, 256, fn);
  const unsigned image_threads = grid_blocks(B, 128, fn), pixels = grid_blocks(B * P, 256, fn);
  const auto dopt = s.options().dtype(at::kDouble);
  Tensor ds = at::empty_like(s);
  Tensor part = at::empty({B * nb, N}, dopt);
  Tensor dcdf = nb > 1 ? at::empty({B, N}, dopt) : part;
  Tensor dh = at::empty({B, N}, dopt);
  Tensor hd_cdf = at::empty({B, 2 * N}, s.options());
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "texstat_dtiem_backward_cuda", [&] {
    // the forward's effective weights and sums (same kernels: the same values)
    const Weights wts = prepare_weights<scalar_t>(weights, offs, B, H, W, stream, fn);
    pixel_partial_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
        s.data_ptr<scalar_t>(), gq.data_ptr<scalar_t>(), P, N, false, nb, chunk,
        levels.data_ptr<scalar_t>(), nullptr, part.data_ptr<double>());
    check_launch(fn);
    if (nb > 1) {
      sum_partials_kernel<<<sums, 256, 0, stream>>>(part.data_ptr<double>(), B, nb, N,
                                                    dcdf.data_ptr<double>());
      check_launch(fn);
    }
    dtiem_backward_hist_kernel<scalar_t><<<image_threads, 128, 0, stream>>>(
        dcdf.data_ptr<double>(), gh.data_ptr<scalar_t>(), raw.data_ptr<scalar_t>(), B, N, theta,
        dh.data_ptr<double>(), hd_cdf.data_ptr<scalar_t>());
    check_launch(fn);
    dtiem_backward_pixel_kernel<scalar_t><<<pixels, 256, 0, stream>>>(
        gq.data_ptr<scalar_t>(), gm.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(),
        levels.data_ptr<scalar_t>(), dh.data_ptr<double>(), hd_cdf.data_ptr<scalar_t>(),
        wts.eff_ptr<scalar_t>(), wts.sums_ptr(), B, H, W, N, offs, ds.data_ptr<scalar_t>());
    check_launch(fn);
  });
  return ds;
}

}  // namespace
}  // namespace cuda
}  // namespace texture
}  // namespace sstkd

TORCH_LIBRARY_IMPL(sstkd_ops, CUDA, m) {
  m.impl("texstat_dtiem", &sstkd::texture::cuda::dtiem_cuda);
  m.impl("texstat_dtiem_backward", &sstkd::texture::cuda::dtiem_backward_cuda);
}

// CUDA kernels of the DTIEM forward texstat_dtiem (schemas in csrc/texture/texture_stats.cpp;
// shared helpers in texture_dtiem_cuda.cuh and texture_stats_cuda.cuh; backward in
// texture_dtiem_backward_cuda.cu); same semantics as csrc/texture/cpu/texture_dtiem_cpu.cpp.
//
// Each pass over pixels is split across blocks of kPixelsPerBlock pixels: each thread stages its
// pixel's contributions in shared memory, owner threads accumulate them in staging order into
// the block's partial sums, and the partials are added in block order (no float atomics:
// bitwise reproducible); per-pixel maps run a thread per pixel. Extra memory:
// O(B*H*W + B*N*N), plus the per-block partials (at most 256 MiB). Importance weights: see
// texture_dtiem_cuda.cuh.
//
// Kernels run on PyTorch's current stream of the tensor's device.
#include "texture_dtiem_cuda.cuh"

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

using namespace dtiem;  // NOLINT: the DTIEM helpers shared with the backward

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

}  // namespace
}  // namespace cuda
}  // namespace texture
}  // namespace sstkd

TORCH_LIBRARY_IMPL(sstkd_ops, CUDA, m) {
  m.impl("texstat_dtiem", &sstkd::texture::cuda::dtiem_cuda);
}

// Shared helpers of the CUDA texture-statistics kernels (texture_cos_sim_cuda.cu,
// texture_qco_cuda.cu, texture_dtiem_cuda.cu; schemas in csrc/texture/texture_stats.cpp):
// launch configuration, stream / device / error handling and the block-level device helpers.
//
// Reductions over pixels: pixels are processed in chunks of kThreads; every thread stages the
// contributions of its pixel in shared memory, then each thread adds, in staging order, the
// contributions to the entries it owns (entry % kThreads == thread; owner_accumulate). The QCO
// and TEM passes split each image (or QCO group) across split_blocks() blocks of at most
// kPixelsPerBlock pixels: each block writes its partial sums to a workspace, and
// sum_partials_kernel adds them in block order. The split depends on the shapes only, never
// on the GPU, and there are no float atomics: results are bitwise reproducible.
//
// Includes only ATen, c10 and c10/cuda headers (see scripts/check_cuda_sources.sh).
#pragma once
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "../texture_stats_checks.h"
#include "../texture_stats_math.h"

namespace sstkd { namespace texture { namespace cuda {
namespace detail {

using namespace ::sstkd::texture::checks;  // NOLINT: the argument checks shared with the CPU

inline constexpr int kThreads = 128;  // threads per block of the statistics kernels
// Pixels of one image handled by one block of the split passes (2 chunks of kThreads): a
// 128 x 128 image takes 64 blocks, so batch 8 gives 512 blocks, about 4 per SM on 132 SMs.
inline constexpr int64_t kPixelsPerBlock = 2 * kThreads;
// Largest per-block partial-sum workspace of a split pass, in doubles (256 MiB).
inline constexpr int64_t kPartialBudget = int64_t(1) << 25;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks per group of a split pass over npix items with K partial sums per block: one block per
// kPixelsPerBlock items, fewer when the (groups, blocks, K) workspace would pass the budget.
inline int64_t split_blocks(int64_t npix, int64_t groups, int64_t K) {
  const int64_t nb = std::max<int64_t>(1, ceil_div(npix, kPixelsPerBlock));
  const int64_t cap = std::max<int64_t>(1, kPartialBudget / std::max<int64_t>(1, groups * K));
  return std::min(nb, cap);
}

// Grid size of a launch over n items, per_block items per block; 0 means "do not launch".
inline unsigned grid_blocks(int64_t n, int64_t per_block, const char* fn) {
  const int64_t blocks = ceil_div(n, per_block);
  TORCH_CHECK(blocks <= std::numeric_limits<int32_t>::max(), fn, ": the launch needs ", blocks,
              " blocks, more than a CUDA grid holds (2^31 - 1); split the batch");
  return static_cast<unsigned>(blocks);
}

// PyTorch's current stream on the current device (set by DeviceScope).
inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream(); }

// Makes the tensor's device current for the scope.
class DeviceScope {
 public:
  explicit DeviceScope(const at::Tensor& t) : guard_(t.device()) {}

 private:
  c10::cuda::CUDAGuard guard_;
};

inline void check_launch(const char* fn) {
  const cudaError_t err = cudaGetLastError();
  TORCH_CHECK(err == cudaSuccess, fn, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}


// ---------------------------------------------------------------------- device helpers

__device__ inline double block_sum(double v, double* red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  const double out = red[0];
  __syncthreads();
  return out;
}

// Each thread adds, in staging order, the staged contributions whose entry it owns.
template <int MAXE>
__device__ inline void owner_accumulate(const int* ent, const double* val, double* acc) {
  for (int i = 0; i < kThreads * MAXE; ++i) {
    const int e = ent[i];
    if (e >= 0 && e % kThreads == static_cast<int>(threadIdx.x)) acc[e] += val[i];
  }
}

// out[g, e] = sum over blocks j = 0 .. nb-1, in order, of part[g, j, e]; one thread per (g, e).
static __global__ void sum_partials_kernel(const double* __restrict__ part, int64_t G, int64_t nb,
                                           int64_t K, double* __restrict__ out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= G * K) return;
  const int64_t g = i / K, e = i % K;
  double acc = 0;
  for (int64_t j = 0; j < nb; ++j) acc += part[(g * nb + j) * K + e];
  out[i] = acc;
}

// First index of the min and of the max of S[0..P) (block of kThreads; -1 when P == 0).
template <typename T>
__device__ void block_argminmax(const T* S, int64_t P, int64_t& imin, int64_t& imax,
                                int64_t* sidx) {
  int64_t mn = -1, mx = -1;
  for (int64_t p = threadIdx.x; p < P; p += blockDim.x) {
    if (mn < 0 || S[p] < S[mn]) mn = p;
    if (mx < 0 || S[p] > S[mx]) mx = p;
  }
  sidx[threadIdx.x] = mn;
  sidx[kThreads + threadIdx.x] = mx;
  __syncthreads();
  if (threadIdx.x == 0) {
    int64_t a = -1, b = -1;
    for (int t = 0; t < kThreads; ++t) {
      const int64_t m = sidx[t], x = sidx[kThreads + t];
      if (m >= 0 && (a < 0 || S[m] < S[a] || (S[m] == S[a] && m < a))) a = m;
      if (x >= 0 && (b < 0 || S[x] > S[b] || (S[x] == S[b] && x < b))) b = x;
    }
    sidx[0] = a;
    sidx[1] = b;
  }
  __syncthreads();
  imin = sidx[0];
  imax = sidx[1];
  __syncthreads();
}

// Split pass 1 (block g * nb + j: pixels [j * chunk, ...) of group g): first argmin / argmax
// of the block's pixels and its non-finite flag.
template <typename T>
__global__ void extrema_partial_kernel(const T* __restrict__ s_all, int64_t P, int64_t nb,
                                       int64_t chunk, int64_t* __restrict__ part_idx,
                                       int* __restrict__ part_bad) {
  __shared__ int64_t sidx[2 * kThreads];
  __shared__ double red[kThreads];
  const int64_t g = blockIdx.x / nb, j = blockIdx.x % nb;
  const int64_t p0 = j * chunk, p1 = p0 + chunk < P ? p0 + chunk : P;
  const int64_t n = p1 > p0 ? p1 - p0 : 0;
  const T* S = s_all + g * P + p0;
  double nbad = 0;
  for (int64_t p = threadIdx.x; p < n; p += blockDim.x) nbad += isfinite(S[p]) ? 0.0 : 1.0;
  const double bad = block_sum(nbad, red);
  int64_t imin, imax;
  block_argminmax(S, n, imin, imax, sidx);
  if (threadIdx.x == 0) {
    part_idx[2 * blockIdx.x] = imin < 0 ? -1 : p0 + imin;
    part_idx[2 * blockIdx.x + 1] = imax < 0 ? -1 : p0 + imax;
    part_bad[blockIdx.x] = bad > 0 ? 1 : 0;
  }
}

// Split pass 2 (block per group): extrema (blocks in pixel order: a strict comparison keeps
// the first index, as the CPU kernels), STLNet's levels and the group's non-finite flag.
template <typename T>
__global__ void stl_levels_kernel(const T* __restrict__ s_all, int64_t P, int64_t L, int64_t nb,
                                  const int64_t* __restrict__ part_idx,
                                  const int* __restrict__ part_bad, T* __restrict__ levels,
                                  int64_t* __restrict__ extrema, int* __restrict__ bad) {
  __shared__ int64_t ext[2];
  const int64_t g = blockIdx.x;
  const T* S = s_all + g * P;
  if (threadIdx.x == 0) {
    int64_t a = -1, b = -1;
    int any_bad = 0;
    for (int64_t j = 0; j < nb; ++j) {
      const int64_t m = part_idx[2 * (g * nb + j)], x = part_idx[2 * (g * nb + j) + 1];
      any_bad |= part_bad[g * nb + j];
      if (m >= 0 && (a < 0 || S[m] < S[a])) a = m;
      if (x >= 0 && (b < 0 || S[x] > S[b])) b = x;
    }
    ext[0] = a;
    ext[1] = b;
    extrema[2 * g] = a;
    extrema[2 * g + 1] = b;
    bad[g] = any_bad;
  }
  __syncthreads();
  const T lo = S[ext[0]], hi = S[ext[1]];
  for (int64_t k = threadIdx.x; k < L; k += blockDim.x)
    levels[g * L + k] = static_cast<T>(::sstkd::texture::math::level_frac(k, L)) * (hi - lo) + lo;
}

}  // namespace detail
}  // namespace cuda
}  // namespace texture
}  // namespace sstkd

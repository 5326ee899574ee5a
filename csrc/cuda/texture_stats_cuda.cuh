// Shared helpers of the CUDA texture-statistics kernels (texture_cos_sim_cuda.cu,
// texture_qco_cuda.cu, texture_dtiem_cuda.cu; schemas in csrc/texture_stats.cpp):
// launch configuration, stream / device / error handling and the block-level device helpers.
//
// The statistics of s run one thread block per image (or QCO group): pixels are processed in
// chunks of kThreads; every thread stages the contributions of its pixel in shared memory, then
// each thread adds, in staging order, the contributions to the entries it owns
// (entry % kThreads == thread; owner_accumulate). No float atomics: results are bitwise
// reproducible.
//
// Includes only ATen, c10 and c10/cuda headers (see scripts/check_cuda_sources.sh).
#pragma once
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace sstkd_texstat_cuda {
namespace detail {

inline constexpr int kThreads = 128;  // threads per block of the statistics kernels

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

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

inline void check_cuda(const at::Tensor& t, const char* fn, const char* name) {
  TORCH_CHECK(t.is_cuda(), fn, ": ", name, " must be a CUDA tensor, got ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, fn, ": ", name,
              " must be float32 or float64, got ", t.scalar_type());
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

// First index of the min and of the max of S[0..P) (block of kThreads).
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

}  // namespace detail
}  // namespace sstkd_texstat_cuda

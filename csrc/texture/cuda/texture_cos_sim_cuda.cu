// CUDA kernels of the cosine-similarity ops texstat_cos_sim(_backward) (schemas in
// csrc/texture/texture_stats.cpp; shared helpers in texture_stats_cuda.cuh); same semantics as
// csrc/texture/cpu/texture_cos_sim_cpu.cpp.
//
// The passes over x are coalesced per-pixel and per-row kernels; the per-row cell sums are
// block reductions in a fixed order (no float atomics: bitwise reproducible).
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

namespace sstkd { namespace texture { namespace cuda {
namespace {

using namespace ::sstkd::texture::math;  // NOLINT: the shared per-value rules
using namespace detail;              // NOLINT: the shared CUDA helpers (texture_stats_cuda.cuh)

using at::Tensor;

// ------------------------------------------------------------------- cosine similarity

template <typename T>
__global__ void row_cell_sum_kernel(const T* __restrict__ x, const T* __restrict__ wgt,
                                    double* __restrict__ out, int64_t C, int64_t H, int64_t W,
                                    int64_t S) {
  __shared__ double red[kThreads];
  const int64_t r = blockIdx.x, b = r / C, P = H * W, h = H / S, w = W / S;
  for (int64_t g = 0; g < S * S; ++g) {
    const int64_t cy = g / S, cx = g % S;
    double acc = 0;
    for (int64_t i = threadIdx.x; i < h * w; i += blockDim.x) {
      const int64_t p = (cy * h + i / w) * W + cx * w + i % w;
      double v = x[r * P + p];
      if (wgt != nullptr) v *= double(wgt[b * P + p]);
      acc += v;
    }
    const double tot = block_sum(acc, red);
    if (threadIdx.x == 0) out[r * S * S + g] = tot;
  }
}

template <typename T>
__global__ void gunit_kernel(const double* __restrict__ sums, T* __restrict__ gunit,
                             T* __restrict__ gnorm, int64_t B, int64_t C, int64_t G,
                             double count) {
  const int64_t i = blockIdx.x * blockDim.x + threadIdx.x;  // b * G + g
  if (i >= B * G) return;
  const int64_t b = i / G, g = i % G;
  double n2 = 0;
  for (int64_t c = 0; c < C; ++c) {
    const double m = sums[(b * C + c) * G + g] / count;
    n2 += m * m;
  }
  const double n = sqrt(n2);
  gnorm[i] = static_cast<T>(n);
  for (int64_t c = 0; c < C; ++c)
    gunit[i * C + c] = static_cast<T>(sums[(b * C + c) * G + g] / count / fmax(n, kNormEps));
}

template <typename T>
__global__ void pixel_dot_kernel(const T* __restrict__ x, const T* __restrict__ gunit,
                                 T* __restrict__ s, T* __restrict__ pnorm, int64_t B, int64_t C,
                                 int64_t H, int64_t W, int64_t S) {
  const int64_t P = H * W, G = S * S;
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= B * P) return;
  const int64_t b = i / P, p = i % P;
  const int64_t g = ((p / W) / (H / S)) * S + (p % W) / (W / S);
  const T* gu = gunit + (b * G + g) * C;
  T dot = 0, nrm = 0;
  for (int64_t c = 0; c < C; ++c) {
    const T v = x[(b * C + c) * P + p];
    dot += v * gu[c];
    nrm += v * v;
  }
  const T nv = sqrt(nrm);
  pnorm[i] = nv;
  s[i] = dot / (nv > T(kNormEps) ? nv : T(kNormEps));
}

template <typename T>
__global__ void coef_kernel(const T* ds, const T* s, const T* pnorm, T* a, T* bc, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const T eps = static_cast<T>(kNormEps);
  const T nv = pnorm[i] > eps ? pnorm[i] : eps;
  a[i] = ds[i] / nv;
  bc[i] = pnorm[i] >= eps ? ds[i] * s[i] / (nv * nv) : T(0);
}

template <typename T>
__global__ void dg_kernel(double* __restrict__ d, const T* __restrict__ gunit,
                          const T* __restrict__ gnorm, int64_t B, int64_t C, int64_t G,
                          double count) {
  const int64_t i = blockIdx.x * blockDim.x + threadIdx.x;  // b * G + g
  if (i >= B * G) return;
  const int64_t b = i / G, g = i % G;
  const double gn = gnorm[i];
  double dot = 0;
  for (int64_t c = 0; c < C; ++c) dot += double(gunit[i * C + c]) * d[(b * C + c) * G + g];
  for (int64_t c = 0; c < C; ++c) {
    double& v = d[(b * C + c) * G + g];
    v = (gn >= kNormEps ? (v - double(gunit[i * C + c]) * dot) / gn : v / kNormEps) / count;
  }
}

template <typename T>
__global__ void grad_x_kernel(const T* __restrict__ x, const T* __restrict__ a,
                              const T* __restrict__ bc, const T* __restrict__ gunit,
                              const double* __restrict__ dg, T* __restrict__ gx, int64_t B,
                              int64_t C, int64_t H, int64_t W, int64_t S) {
  const int64_t P = H * W, G = S * S;
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= B * C * P) return;
  const int64_t r = i / P, p = i % P, b = r / C, c = r % C;
  const int64_t g = ((p / W) / (H / S)) * S + (p % W) / (W / S);
  gx[i] = a[b * P + p] * gunit[(b * G + g) * C + c] - bc[b * P + p] * x[i] +
          static_cast<T>(dg[r * G + g]);
}

std::tuple<Tensor, Tensor, Tensor, Tensor> cos_sim_cuda(const Tensor& x_, int64_t cells) {
  constexpr const char* fn = "texstat_cos_sim";
  cos_sim_args(x_, cells, fn, /*cuda=*/true);
  const DeviceScope scope(x_);
  const Tensor x = x_.contiguous();
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), S = cells;
  const int64_t P = H * W, G = S * S;
  const unsigned rows = grid_blocks(B * C, 1, fn), cells_grid = grid_blocks(B * G, 128, fn);
  const unsigned pixels = grid_blocks(B * P, 256, fn);
  Tensor s = at::empty({B, H, W}, x.options());
  Tensor pnorm = at::empty({B, H, W}, x.options());
  Tensor gunit = at::empty({B, G, C}, x.options());
  Tensor gnorm = at::empty({B, G}, x.options());
  Tensor sums = at::empty({B, C, G}, x.options().dtype(at::kDouble));
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "texstat_cos_sim_cuda", [&] {
    if (rows > 0) {  // C = 0: no sums, unit means of no channel
      row_cell_sum_kernel<scalar_t><<<rows, kThreads, 0, stream>>>(
          x.data_ptr<scalar_t>(), nullptr, sums.data_ptr<double>(), C, H, W, S);
      check_launch(fn);
    }
    if (cells_grid > 0) {
      gunit_kernel<scalar_t><<<cells_grid, 128, 0, stream>>>(
          sums.data_ptr<double>(), gunit.data_ptr<scalar_t>(), gnorm.data_ptr<scalar_t>(), B, C,
          G, double(P / G));
      check_launch(fn);
    }
    if (pixels > 0) {
      pixel_dot_kernel<scalar_t><<<pixels, 256, 0, stream>>>(
          x.data_ptr<scalar_t>(), gunit.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(),
          pnorm.data_ptr<scalar_t>(), B, C, H, W, S);
      check_launch(fn);
    }
  });
  return {s, pnorm, gunit, gnorm};
}

Tensor cos_sim_backward_cuda(const Tensor& grad_s_, const Tensor& x_, const Tensor& s_,
                             const Tensor& pnorm_, const Tensor& gunit_, const Tensor& gnorm_,
                             int64_t cells) {
  constexpr const char* fn = "texstat_cos_sim_backward";
  cos_sim_backward_args(grad_s_, x_, s_, pnorm_, gunit_, gnorm_, cells, fn, /*cuda=*/true);
  const DeviceScope scope(x_);
  const Tensor x = x_.contiguous(), ds = grad_s_.contiguous();
  const Tensor s = s_.contiguous(), pnorm = pnorm_.contiguous();
  const Tensor gunit = gunit_.contiguous(), gnorm = gnorm_.contiguous();
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), S = cells;
  const int64_t P = H * W, G = S * S;
  const unsigned rows = grid_blocks(B * C, 1, fn), cells_grid = grid_blocks(B * G, 128, fn);
  const unsigned pixels = grid_blocks(B * P, 256, fn), all = grid_blocks(B * C * P, 256, fn);
  if (all == 0) return at::empty_like(x);  // B = 0 or C = 0: no gradient entry
  Tensor a = at::empty({B, P}, x.options()), bc = at::empty({B, P}, x.options());
  Tensor d = at::empty({B, C, G}, x.options().dtype(at::kDouble));
  Tensor gx = at::empty_like(x);
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "texstat_cos_sim_backward_cuda", [&] {
    coef_kernel<scalar_t><<<pixels, 256, 0, stream>>>(
        ds.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), pnorm.data_ptr<scalar_t>(),
        a.data_ptr<scalar_t>(), bc.data_ptr<scalar_t>(), B * P);
    check_launch(fn);
    row_cell_sum_kernel<scalar_t><<<rows, kThreads, 0, stream>>>(
        x.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(), d.data_ptr<double>(), C, H, W, S);
    check_launch(fn);
    dg_kernel<scalar_t><<<cells_grid, 128, 0, stream>>>(
        d.data_ptr<double>(), gunit.data_ptr<scalar_t>(), gnorm.data_ptr<scalar_t>(), B, C, G,
        double(P / G));
    check_launch(fn);
    grad_x_kernel<scalar_t><<<all, 256, 0, stream>>>(
        x.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(), bc.data_ptr<scalar_t>(),
        gunit.data_ptr<scalar_t>(), d.data_ptr<double>(), gx.data_ptr<scalar_t>(), B, C, H, W,
        S);
    check_launch(fn);
  });
  return gx;
}

}  // namespace
}  // namespace cuda
}  // namespace texture
}  // namespace sstkd

TORCH_LIBRARY_IMPL(sstkd_ops, CUDA, m) {
  m.impl("texstat_cos_sim", &sstkd::texture::cuda::cos_sim_cuda);
  m.impl("texstat_cos_sim_backward", &sstkd::texture::cuda::cos_sim_backward_cuda);
}

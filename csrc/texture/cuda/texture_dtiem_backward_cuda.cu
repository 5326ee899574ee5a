// CUDA kernels of the DTIEM backward texstat_dtiem_backward (schemas in
// csrc/texture/texture_stats.cpp; shared helpers in texture_dtiem_cuda.cuh and
// texture_stats_cuda.cuh; forward in texture_dtiem_cuda.cu); same semantics as
// csrc/texture/cpu/texture_dtiem_cpu.cpp: a reduction pass over pixels (d CDF, split across
// blocks and added in block order: bitwise reproducible), a thread per image through the
// denoising, then a thread per pixel.
//
// Kernels run on PyTorch's current stream of the tensor's device.
#include "texture_dtiem_cuda.cuh"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <cstdint>
#include <optional>

namespace sstkd { namespace texture { namespace cuda {
namespace {

using namespace dtiem;  // NOLINT: the DTIEM helpers shared with the forward

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
  m.impl("texstat_dtiem_backward", &sstkd::texture::cuda::dtiem_backward_cuda);
}

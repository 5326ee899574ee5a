// CUDA kernels of the texture-statistics ops (schemas in csrc/texture_stats.cpp); same
// semantics as csrc/cpu/texture_stats_cpu.cpp.
//
// The passes over x (cosine similarity forward / backward) are coalesced per-pixel and per-row
// kernels. The statistics of s run one thread block per image (or QCO group): pixels are
// processed in chunks of kThreads; every thread stages the contributions of its pixel in
// shared memory, then each thread adds, in staging order, the contributions to the entries it
// owns (entry % kThreads == thread). No float atomics: results are bitwise reproducible.
// Extra memory: O(B*H*W + B*N*N).
//
// Kernels run on PyTorch's current stream of the tensor's device.
#include "../texture_stats_math.h"
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>

namespace sstkd_texstat_cuda {
namespace {

using namespace sstkd_texstat_math;  // NOLINT: the shared per-value rules

using at::Tensor;

constexpr double kNormEps = 1e-12;
constexpr double kQco2dEps = 1e-6;
constexpr int kThreads = 128;  // threads per block of the statistics kernels

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

void check_cuda(const Tensor& t, const char* fn, const char* name) {
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
  check_cuda(x_, "texstat_cos_sim", "x");
  TORCH_CHECK(x_.dim() == 4, "texstat_cos_sim: x must be 4-D, got ", x_.sizes());
  const DeviceScope scope(x_);
  const Tensor x = x_.contiguous();
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), S = cells;
  TORCH_CHECK(S >= 1 && H % S == 0 && W % S == 0 && H > 0 && W > 0,
              "texstat_cos_sim: H, W must be positive multiples of cells, got ", x.sizes());
  const int64_t P = H * W, G = S * S;
  Tensor s = at::empty({B, H, W}, x.options());
  Tensor pnorm = at::empty({B, H, W}, x.options());
  Tensor gunit = at::empty({B, G, C}, x.options());
  Tensor gnorm = at::empty({B, G}, x.options());
  Tensor sums = at::empty({B, C, G}, x.options().dtype(at::kDouble));
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "texstat_cos_sim_cuda", [&] {
    row_cell_sum_kernel<scalar_t><<<B * C, kThreads, 0, stream>>>(
        x.data_ptr<scalar_t>(), nullptr, sums.data_ptr<double>(), C, H, W, S);
    check_launch("texstat");
    gunit_kernel<scalar_t><<<ceil_div(B * G, 128), 128, 0, stream>>>(
        sums.data_ptr<double>(), gunit.data_ptr<scalar_t>(), gnorm.data_ptr<scalar_t>(), B, C,
        G, double(P / G));
    check_launch("texstat");
    pixel_dot_kernel<scalar_t><<<ceil_div(B * P, 256), 256, 0, stream>>>(
        x.data_ptr<scalar_t>(), gunit.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(),
        pnorm.data_ptr<scalar_t>(), B, C, H, W, S);
    check_launch("texstat");
  });
  return {s, pnorm, gunit, gnorm};
}

Tensor cos_sim_backward_cuda(const Tensor& grad_s_, const Tensor& x_, const Tensor& s_,
                             const Tensor& pnorm_, const Tensor& gunit_, const Tensor& gnorm_,
                             int64_t cells) {
  check_cuda(x_, "texstat_cos_sim_backward", "x");
  const DeviceScope scope(x_);
  const Tensor x = x_.contiguous(), ds = grad_s_.contiguous().to(x.scalar_type());
  const Tensor s = s_.contiguous(), pnorm = pnorm_.contiguous();
  const Tensor gunit = gunit_.contiguous(), gnorm = gnorm_.contiguous();
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), S = cells;
  const int64_t P = H * W, G = S * S;
  Tensor a = at::empty({B, P}, x.options()), bc = at::empty({B, P}, x.options());
  Tensor d = at::empty({B, C, G}, x.options().dtype(at::kDouble));
  Tensor gx = at::empty_like(x);
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "texstat_cos_sim_backward_cuda", [&] {
    coef_kernel<scalar_t><<<ceil_div(B * P, 256), 256, 0, stream>>>(
        ds.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), pnorm.data_ptr<scalar_t>(),
        a.data_ptr<scalar_t>(), bc.data_ptr<scalar_t>(), B * P);
    check_launch("texstat");
    row_cell_sum_kernel<scalar_t><<<B * C, kThreads, 0, stream>>>(
        x.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(), d.data_ptr<double>(), C, H, W, S);
    check_launch("texstat");
    dg_kernel<scalar_t><<<ceil_div(B * G, 128), 128, 0, stream>>>(
        d.data_ptr<double>(), gunit.data_ptr<scalar_t>(), gnorm.data_ptr<scalar_t>(), B, C, G,
        double(P / G));
    check_launch("texstat");
    grad_x_kernel<scalar_t><<<ceil_div(B * C * P, 256), 256, 0, stream>>>(
        x.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(), bc.data_ptr<scalar_t>(),
        gunit.data_ptr<scalar_t>(), d.data_ptr<double>(), gx.data_ptr<scalar_t>(), B, C, H, W,
        S);
    check_launch("texstat");
  });
  return gx;
}

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
    check_launch("texstat");
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
    check_launch("texstat");
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
    check_launch("texstat");
    tem_forward_kernel<scalar_t><<<ceil_div(B * C * P, 256), 256, 0, stream>>>(
        f.data_ptr<scalar_t>(), ks.data_ptr<int>(), rs.data_ptr<scalar_t>(),
        out.data_ptr<scalar_t>(), B, C, P, L);
    check_launch("texstat");
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
    check_launch("texstat");
    tem_row_hist_kernel<scalar_t><<<B * C, kThreads, 0, stream>>>(
        go.data_ptr<scalar_t>(), ks.data_ptr<int>(), rs.data_ptr<scalar_t>(), nullptr, C, P, L,
        acc.data_ptr<double>(), gf.data_ptr<scalar_t>());
    check_launch("texstat");
    tem_grad_s_kernel<scalar_t><<<ceil_div(B * P, 256), 256, 0, stream>>>(
        f.data_ptr<scalar_t>(), go.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(),
        levels.data_ptr<scalar_t>(), ks.data_ptr<int>(), B, C, P, L, gs.data_ptr<scalar_t>(),
        contrib.data_ptr<double>());
    check_launch("texstat");
    tem_row_hist_kernel<scalar_t><<<B, kThreads, 0, stream>>>(
        nullptr, ks.data_ptr<int>(), nullptr, contrib.data_ptr<double>(), C, P, L,
        acc.data_ptr<double>(), gl.data_ptr<scalar_t>());
    check_launch("texstat");
  });
  return {gf, gs, gl};
}

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
                                     double* __restrict__ scratch, int* __restrict__ bad) {
  __shared__ int ent[kThreads * 4];
  __shared__ double val[kThreads * 4];
  __shared__ int64_t sidx[2 * kThreads];
  const int64_t b = blockIdx.x, P = H * W, D = offs.n;
  const T* S = s_all + b * P;
  T* lv = lv_all + b * N;
  T* cdf = cdf_all + b * N;
  double* M = scratch + b * (N * N + 2 * N);
  double* sums = M + N * N;
  double* cnt = sums + N;
  for (int64_t p = threadIdx.x; p < P; p += blockDim.x)
    if (!isfinite(S[p])) atomicExch(bad, 1);  // flag only
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

Offsets make_offsets(at::IntArrayRef offsets, const char* fn) {
  TORCH_CHECK(offsets.size() % 2 == 0 && offsets.size() <= 16, fn,
              ": offsets must be at most 8 (dy, dx) pairs on CUDA, got ", offsets.size() / 2);
  Offsets o{};
  o.n = static_cast<int64_t>(offsets.size()) / 2;
  for (size_t i = 0; i < offsets.size(); ++i) o.v[i] = offsets[i];
  return o;
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> dtiem_cuda(const Tensor& s_, int64_t N,
                                                              int64_t iters, double theta,
                                                              at::IntArrayRef offsets) {
  check_cuda(s_, "texstat_dtiem", "s");
  TORCH_CHECK(s_.dim() == 3 && N >= 1 && iters >= 0, "texstat_dtiem: bad arguments");
  TORCH_CHECK(N * N + 2 * N < (int64_t(1) << 31), "texstat_dtiem: num_levels too large");
  const Offsets offs = make_offsets(offsets, "texstat_dtiem");
  const DeviceScope scope(s_);
  const Tensor s = s_.contiguous();
  const int64_t B = s.size(0), H = s.size(1), W = s.size(2), D = offs.n;
  TORCH_CHECK(H * W > 0, "texstat_dtiem: empty image");
  Tensor q = at::empty({B, H, W}, s.options());
  Tensor cooc = at::empty({B, D, N, N}, s.options());
  Tensor hist = at::empty({B, N}, s.options());
  Tensor levels = at::empty({B, N}, s.options());
  Tensor raw = at::empty({B, N}, s.options());
  Tensor cdf = at::empty({B, N}, s.options());
  Tensor scratch = at::empty({B, N * N + 2 * N}, s.options().dtype(at::kDouble));
  Tensor bad = at::zeros({1}, s.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "texstat_dtiem_cuda", [&] {
    dtiem_forward_kernel<scalar_t><<<B, kThreads, 0, current_stream()>>>(
        s.data_ptr<scalar_t>(), H, W, N, iters, theta, offs, q.data_ptr<scalar_t>(),
        cooc.data_ptr<scalar_t>(), hist.data_ptr<scalar_t>(), levels.data_ptr<scalar_t>(),
        raw.data_ptr<scalar_t>(), cdf.data_ptr<scalar_t>(), scratch.data_ptr<double>(),
        bad.data_ptr<int>());
    check_launch("texstat");
  });
  TORCH_CHECK(bad.item<int>() == 0,
              "texstat_dtiem: the texture intensity is not finite (the input holds NaN or Inf)");
  return {q, cooc, hist, levels, raw};
}

Tensor dtiem_backward_cuda(const Tensor& grad_q, const Tensor& grad_cooc,
                           const Tensor& grad_hist, const Tensor& s_, const Tensor& levels_,
                           const Tensor& raw_, double theta, at::IntArrayRef offsets) {
  check_cuda(s_, "texstat_dtiem_backward", "s");
  const Offsets offs = make_offsets(offsets, "texstat_dtiem_backward");
  const DeviceScope scope(s_);
  const Tensor s = s_.contiguous(), levels = levels_.contiguous(), raw = raw_.contiguous();
  const Tensor gq = grad_q.contiguous().to(s.scalar_type());
  const Tensor gm = grad_cooc.contiguous().to(s.scalar_type());
  const Tensor gh = grad_hist.contiguous().to(s.scalar_type());
  const int64_t B = s.size(0), H = s.size(1), W = s.size(2), N = levels.size(1);
  if (N == 1) return at::zeros_like(s);
  Tensor ds = at::empty_like(s);
  Tensor scratch = at::empty({B, 3 * N}, s.options().dtype(at::kDouble));
  Tensor hd_cdf = at::empty({B, 2 * N}, s.options());
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "texstat_dtiem_backward_cuda", [&] {
    dtiem_backward_kernel<scalar_t><<<B, kThreads, 0, current_stream()>>>(
        gq.data_ptr<scalar_t>(), gm.data_ptr<scalar_t>(), gh.data_ptr<scalar_t>(),
        s.data_ptr<scalar_t>(), levels.data_ptr<scalar_t>(), raw.data_ptr<scalar_t>(), H, W, N,
        theta, offs, scratch.data_ptr<double>(), hd_cdf.data_ptr<scalar_t>(),
        ds.data_ptr<scalar_t>());
    check_launch("texstat");
  });
  return ds;
}

}  // namespace
}  // namespace sstkd_texstat_cuda

TORCH_LIBRARY_IMPL(sstkd_ops, CUDA, m) {
  m.impl("texstat_cos_sim", &sstkd_texstat_cuda::cos_sim_cuda);
  m.impl("texstat_cos_sim_backward", &sstkd_texstat_cuda::cos_sim_backward_cuda);
  m.impl("texstat_qco", &sstkd_texstat_cuda::qco_cuda);
  m.impl("texstat_qco_backward", &sstkd_texstat_cuda::qco_backward_cuda);
  m.impl("texstat_qco_tem", &sstkd_texstat_cuda::qco_tem_cuda);
  m.impl("texstat_qco_tem_backward", &sstkd_texstat_cuda::qco_tem_backward_cuda);
  m.impl("texstat_dtiem", &sstkd_texstat_cuda::dtiem_cuda);
  m.impl("texstat_dtiem_backward", &sstkd_texstat_cuda::dtiem_backward_cuda);
}

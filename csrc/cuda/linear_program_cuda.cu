// CUDA kernel of sstkd_ops::linear_program.
//
// Persistent blocks: block b runs the whole program on planes b, b + gridDim.x, ... with its
// own slice of a global workspace (intermediates of one plane stay hot in L2). Threads of a
// block split each instruction's outputs; __syncthreads() separates instructions. Every
// transpose is evaluated in gather form (each output sums its own inputs), so there are no
// atomics and results are deterministic.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "../linear_program.h"

namespace sstkd {
namespace {

constexpr int kThreads = 256;


template <typename T>
__device__ void run_instruction(const int64_t* c, const int32_t* tables, const T* coefs,
                                const PlaneSpaces<T>& sp, T* tmp) {
  const bool acc = (c[0] & kAccumulate) != 0;
  const int64_t op = c[0] & ~kAccumulate;
  T* dst = sp.ptr(c[1]);
  const T* a = sp.ptr(c[2]);
  const int64_t n = c[4];
  const int64_t Ws = c[7], Ho = c[8], Wo = c[9];
  const int64_t s1 = c[10], p1 = c[11], s2 = c[12], p2 = c[13];
  const T* f1 = coefs + c[14];
  const T* f2 = coefs + c[16];
  const int64_t l1 = c[15], l2 = c[17];
  switch (op) {
    case kGather: {
      const int32_t* tab = tables + c[5];
      for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
        const int32_t t = tab[k];
        const T v = t >= 0 ? a[t] : T(0);
        dst[k] = acc ? dst[k] + v : v;
      }
      break;
    }
    case kScatterAdd: {
      const int32_t* rowptr = tables + c[5];
      const int32_t* col = rowptr + n + 1;
      for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
        T s = T(0);
        for (int32_t j = rowptr[k]; j < rowptr[k + 1]; ++j) s += a[col[j]];
        dst[k] += s;
      }
      break;
    }
    case kZero:
      for (int64_t k = threadIdx.x; k < n; k += blockDim.x) dst[k] = T(0);
      break;
    case kAxpby: {
      const T* b = sp.ptr(c[3]);
      const T alpha = f1[0], beta = f2[0];
      for (int64_t k = threadIdx.x; k < n; k += blockDim.x) dst[k] = alpha * a[k] + beta * b[k];
      break;
    }
    case kAxpy: {
      const T alpha = f1[0];
      for (int64_t k = threadIdx.x; k < n; k += blockDim.x) dst[k] += alpha * a[k];
      break;
    }
    case kSepCorr: {
      const int64_t rows = (Ho - 1) * s1 + l1;
      for (int64_t e = threadIdx.x; e < rows * Wo; e += blockDim.x) {
        const int64_t r = e / Wo, j = e % Wo;
        const T* s = a + (r + p1) * Ws + p2 + j * s2;
        T v = T(0);
        for (int64_t b = 0; b < l2; ++b) v += f2[b] * s[b];
        tmp[e] = v;
      }
      __syncthreads();
      for (int64_t e = threadIdx.x; e < Ho * Wo; e += blockDim.x) {
        const int64_t i = e / Wo, j = e % Wo;
        T v = T(0);
        for (int64_t q = 0; q < l1; ++q) v += f1[q] * tmp[(i * s1 + q) * Wo + j];
        dst[e] = acc ? dst[e] + v : v;
      }
      break;
    }
    case kSepCorrT: {
      // a is (Ho, Wo); dst is (Hs, Ws). tmp[i, col] for col in the touched column span.
      const int64_t wspan = (Wo - 1) * s2 + l2;
      const int64_t hspan = (Ho - 1) * s1 + l1;
      for (int64_t e = threadIdx.x; e < Ho * wspan; e += blockDim.x) {
        const int64_t i = e / wspan, cc = e % wspan;
        T v = T(0);
        for (int64_t b = cc % s2; b < l2; b += s2) {
          const int64_t j = (cc - b) / s2;
          if (cc >= b && j < Wo) v += f2[b] * a[i * Wo + j];
        }
        tmp[e] = v;
      }
      __syncthreads();
      for (int64_t e = threadIdx.x; e < hspan * wspan; e += blockDim.x) {
        const int64_t r = e / wspan, cc = e % wspan;
        T v = T(0);
        for (int64_t q = r % s1; q < l1; q += s1) {
          const int64_t i = (r - q) / s1;
          if (r >= q && i < Ho) v += f1[q] * tmp[i * wspan + cc];
        }
        dst[(r + p1) * Ws + p2 + cc] += v;
      }
      break;
    }
    case kCorr2d: {
      for (int64_t e = threadIdx.x; e < Ho * Wo; e += blockDim.x) {
        const int64_t i = e / Wo, j = e % Wo;
        T v = T(0);
        for (int64_t q = 0; q < l1; ++q) {
          const T* s = a + (i * s1 + q + p1) * Ws + p2 + j * s2;
          for (int64_t b = 0; b < l2; ++b) v += f1[q * l2 + b] * s[b];
        }
        dst[e] = acc ? dst[e] + v : v;
      }
      break;
    }
    case kCorr2dT: {
      const int64_t wspan = (Wo - 1) * s2 + l2;
      const int64_t hspan = (Ho - 1) * s1 + l1;
      for (int64_t e = threadIdx.x; e < hspan * wspan; e += blockDim.x) {
        const int64_t r = e / wspan, cc = e % wspan;
        T v = T(0);
        for (int64_t q = r % s1; q < l1; q += s1) {
          const int64_t i = (r - q) / s1;
          if (r < q || i >= Ho) continue;
          for (int64_t b = cc % s2; b < l2; b += s2) {
            const int64_t j = (cc - b) / s2;
            if (cc >= b && j < Wo) v += f1[q * l2 + b] * a[i * Wo + j];
          }
        }
        dst[(r + p1) * Ws + p2 + cc] += v;
      }
      break;
    }
    default:
      break;  // validated on the host
  }
}

template <typename T>
__global__ void linear_program_kernel(const T* __restrict__ x, T* __restrict__ out,
                                      T* __restrict__ ws_all, const int64_t* __restrict__ instr,
                                      int64_t n_instr, const int32_t* __restrict__ tables,
                                      const T* __restrict__ coefs, int64_t planes,
                                      int64_t in_numel, int64_t out_numel, int64_t ws_stride,
                                      int64_t ws_numel) {
  T* ws = ws_all + static_cast<int64_t>(blockIdx.x) * ws_stride;
  T* tmp = ws + ws_numel;
  for (int64_t p = blockIdx.x; p < planes; p += gridDim.x) {
    PlaneSpaces<T> sp{x + p * in_numel, out + p * out_numel, ws};
    for (int64_t q = 0; q < n_instr; ++q) {
      run_instruction<T>(instr + q * kInstrCols, tables, coefs, sp, tmp);
      __syncthreads();
    }
  }
}

at::Tensor linear_program_cuda(const at::Tensor& x, const at::Tensor& instr,
                               const at::Tensor& tables, const at::Tensor& coefs,
                               int64_t out_numel, int64_t ws_numel, const at::Tensor&,
                               const at::Tensor&, const at::Tensor&, int64_t) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 2, "sstkd_ops::linear_program (CUDA): x must be a "
              "(planes, numel) CUDA tensor, got ", x.sizes(), " on ", x.device());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "sstkd_ops::linear_program (CUDA): x must be float32 or float64, got ",
              x.scalar_type());
  TORCH_CHECK(instr.scalar_type() == at::kLong && instr.dim() == 2 &&
                  instr.size(1) == kInstrCols,
              "sstkd_ops::linear_program (CUDA): instr must be int64 (n, ", kInstrCols, ")");
  TORCH_CHECK(tables.scalar_type() == at::kInt && coefs.scalar_type() == at::kDouble,
              "sstkd_ops::linear_program (CUDA): tables must be int32 and coefs float64");
  const c10::cuda::CUDAGuard guard(x.device());
  const auto xc = x.contiguous();
  const auto instr_cpu = instr.to(at::kCPU).contiguous();
  const auto tables_cpu = tables.to(at::kCPU).contiguous();
  validate_program(instr_cpu.data_ptr<int64_t>(), instr_cpu.size(0),
                   tables_cpu.data_ptr<int32_t>(), tables_cpu.numel(), coefs.numel(),
                   xc.size(1), out_numel, ws_numel);
  const auto instr_dev = instr.to(x.device()).contiguous();
  const auto tables_dev = tables.to(x.device()).contiguous();
  const int64_t planes = xc.size(0);
  auto out = at::empty({planes, out_numel}, xc.options());
  if (planes == 0 || instr_cpu.size(0) == 0) return out;
  int sms = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount,
                                        x.device().index()));
  const int64_t blocks = std::min<int64_t>(planes, static_cast<int64_t>(sms) * 4);
  const int64_t ws_stride =
      ws_numel + sep_scratch_numel(instr_cpu.data_ptr<int64_t>(), instr_cpu.size(0));
  auto ws = at::empty({blocks, ws_stride}, xc.options());
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "linear_program_cuda", [&] {
    const auto coefs_dev = coefs.to(x.device(), xc.scalar_type()).contiguous();
    linear_program_kernel<scalar_t>
        <<<static_cast<unsigned>(blocks), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
            xc.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), ws.data_ptr<scalar_t>(),
            instr_dev.data_ptr<int64_t>(), instr_cpu.size(0), tables_dev.data_ptr<int32_t>(),
            coefs_dev.data_ptr<scalar_t>(), planes, xc.size(1), out_numel, ws_stride, ws_numel);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace
}  // namespace sstkd

TORCH_LIBRARY_IMPL(sstkd_ops, CUDA, m) {
  m.impl("linear_program", &sstkd::linear_program_cuda);
}

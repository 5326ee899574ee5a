// CUDA kernel of sstkd_ops::linear_program.
//
// Persistent blocks: block b runs the whole program on planes b, b + gridDim.x, ... with its
// own slice of a global workspace, reused from plane to plane. Threads of a block split each
// instruction's outputs; __syncthreads() separates instructions. An image (fewer planes than
// SMs, each of at least 256^2 values) would keep most SMs idle that way: each instruction is
// then launched on its own over about 4 blocks per SM (linear_program_split_kernel). Every
// transpose is evaluated in gather form (each output sums its own inputs), so there are no
// atomics and results are deterministic.
//
// Decomposition: one plane's working set is its workspace (ws_numel, the separable scratch
// included). The grid is sized so that the live workspaces fit the L2: one block per SM at
// least (kThreads = 512 threads, 16 warps), up to 4 per SM while they fit half the L2 (for
// a 128x128 pdfb_dec backward, ~502 KB per plane in float32 with the scratch: 132 blocks,
// ~66 MB on an H200, against 528 blocks and ~265 MB before; the program's live set is
// ~434 KB, so fitting the L2 entirely needs a plane split across blocks).
//
// Nothing is copied to the host: the program was validated once (linear_program_check);
// here each instruction's operands and each table entry are re-checked on the device and a
// bad one is skipped, never dereferenced.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <mutex>
#include <unordered_map>

#include "../linear_program.h"

namespace sstkd { namespace linprog {
namespace {

constexpr int kThreads = 512;


// Sizes of the three address spaces and of the tables, for the in-kernel checks.
struct Limits {
  int64_t space[3];
  int64_t n_tables, n_coefs;
  // [operand, operand + numel) lies in its space
  __device__ bool fits(int64_t operand, int64_t numel) const {
    const int64_t sp = operand >> kSpaceShift, off = operand & kOffsetMask;
    return sp >= 0 && sp <= 2 && numel >= 0 && off + numel <= space[sp];
  }
  __device__ int64_t room(int64_t operand) const {
    return space[operand >> kSpaceShift] - (operand & kOffsetMask);
  }
};

// Operands, geometry and coefficient ranges of row c (the table entries are checked where
// they are read). Every thread computes the same answer, so a skipped instruction skips
// its __syncthreads() in every thread alike.
__device__ bool instruction_ok(const int64_t* c, const Limits& lim) {
  const int64_t op = c[0] & ~kAccumulate;
  const int64_t n = c[4];
  if ((c[1] >> kSpaceShift) == 0 || c[14] < 0 || c[16] < 0) return false;
  switch (op) {
    case kGather:
      return lim.fits(c[1], n) && lim.fits(c[2], 0) && c[5] >= 0 && c[5] + n <= lim.n_tables;
    case kScatterAdd:
      return lim.fits(c[1], n) && lim.fits(c[2], 0) && c[5] >= 0 &&
             c[5] + n + 1 <= lim.n_tables;
    case kZero:
      return lim.fits(c[1], n);
    case kAxpby:
    case kAxpy:
      return lim.fits(c[1], n) && lim.fits(c[2], n) && c[14] < lim.n_coefs &&
             (op == kAxpy || (lim.fits(c[3], n) && c[16] < lim.n_coefs));
    case kSepCorr:
    case kSepCorrT:
    case kCorr2d:
    case kCorr2dT: {
      const bool transposed = (op == kSepCorrT || op == kCorr2dT);
      const bool sep = (op == kSepCorr || op == kSepCorrT);
      const int64_t Hs = c[6], Ws = c[7], Ho = c[8], Wo = c[9];
      const int64_t l1 = c[15], l2 = c[17];
      if (!(Ho >= 1 && Wo >= 1 && c[10] >= 1 && c[12] >= 1 && c[11] >= 0 && c[13] >= 0 &&
            l1 >= 1 && l2 >= 1 && (Ho - 1) * c[10] + c[11] + l1 <= Hs &&
            (Wo - 1) * c[12] + c[13] + l2 <= Ws))
        return false;
      if (!lim.fits(c[1], transposed ? Hs * Ws : Ho * Wo) ||
          !lim.fits(c[2], transposed ? Ho * Wo : Hs * Ws))
        return false;
      if (!sep) return c[14] + l1 * l2 <= lim.n_coefs;
      return c[14] + l1 <= lim.n_coefs && c[16] + l2 <= lim.n_coefs &&
             (c[3] >> kSpaceShift) == 2 && lim.fits(c[3], sep_scratch_numel(c));
    }
    case kGatherRuns:  // the C++ CPU kernel's forms; the runtime packs tables for CUDA
    case kScaledGatherRuns:
    case kCheckerCorr2d:
    case kSepCorrRowsFirst:
    case kUpsampledSepCorr:
    default:
      return false;
  }
}

// The elements a thread computes: first, first + step, ... (a block's threads over one
// plane: threadIdx.x, blockDim.x; the blocks of a split instruction: the whole grid row).
struct Lanes {
  int64_t first;
  int64_t step;
};

// Output (i, j) of a valid correlation: the source rows i s1 + q + p1 (q < l1), each row's
// columns j s2 + p2 + b (b < l2), in increasing q, then b. kSep: f1[q] times the row's sum of
// f2[b] a[...] (the rounding of kSepCorr's two passes); else K[q, b] = f1[q l2 + b] (kCorr2d).
template <typename T, bool kSep>
__device__ T forward_sum(const T* a, int64_t i, int64_t j, int64_t Ws, int64_t s1, int64_t p1,
                         int64_t s2, int64_t p2, const double* f1, int64_t l1,
                         const double* f2, int64_t l2) {
  T v = T(0);
  for (int64_t q = 0; q < l1; ++q) {
    const T* s = a + (i * s1 + q + p1) * Ws + p2 + j * s2;
    T part = T(0);
    for (int64_t b = 0; b < l2; ++b) {
      if constexpr (kSep) {
        part += static_cast<T>(f2[b]) * s[b];
      } else {
        v += static_cast<T>(f1[q * l2 + b]) * s[b];
      }
    }
    if constexpr (kSep) v += static_cast<T>(f1[q]) * part;
  }
  return v;
}

// The value a transposed correlation adds at destination (r, cc) (gather form): the source
// elements (i, j) reaching it, i = (r - q) / s1, j = (cc - b) / s2, in increasing q, then b.
// kSep: f1[q] times the row's sum of f2[b] a[i, j] (the rounding of kSepCorrT's two passes);
// else the 2-D kernel K[q, b] = f1[q l2 + b] (kCorr2dT).
template <typename T, bool kSep>
__device__ T transposed_sum(const T* a, int64_t r, int64_t cc, int64_t Ho, int64_t Wo,
                            int64_t s1, int64_t s2, const double* f1, int64_t l1,
                            const double* f2, int64_t l2) {
  T v = T(0);
  for (int64_t q = r % s1; q < l1; q += s1) {
    const int64_t i = (r - q) / s1;
    if (r < q || i >= Ho) continue;
    T part = T(0);
    for (int64_t b = cc % s2; b < l2; b += s2) {
      const int64_t j = (cc - b) / s2;
      if (cc < b || j >= Wo) continue;
      if constexpr (kSep) {
        part += static_cast<T>(f2[b]) * a[i * Wo + j];
      } else {
        v += static_cast<T>(f1[q * l2 + b]) * a[i * Wo + j];
      }
    }
    if constexpr (kSep) v += static_cast<T>(f1[q]) * part;
  }
  return v;
}

template <typename T>
__device__ void run_instruction(const int64_t* c, const int32_t* tables,
                                const double* coefs, const PlaneSpaces<T>& sp,
                                const Limits& lim, Lanes lanes, bool direct) {
  const bool acc = (c[0] & kAccumulate) != 0;
  const int64_t op = c[0] & ~kAccumulate;
  T* dst = sp.ptr(c[1]);
  const T* a = sp.ptr(c[2]);
  T* tmp = sp.ptr(c[3]);
  const int64_t n = c[4];
  const int64_t Ws = c[7], Ho = c[8], Wo = c[9];
  const int64_t s1 = c[10], p1 = c[11], s2 = c[12], p2 = c[13];
  const double* f1 = coefs + c[14];
  const double* f2 = coefs + c[16];
  const int64_t l1 = c[15], l2 = c[17];
  switch (op) {
    case kGather: {
      const int32_t* tab = tables + c[5];
      const int64_t room = lim.room(c[2]);
      for (int64_t k = lanes.first; k < n; k += lanes.step) {
        const int32_t t = tab[k];
        const T v = (t >= 0 && t < room) ? a[t] : T(0);
        dst[k] = acc ? dst[k] + v : v;
      }
      break;
    }
    case kScatterAdd: {
      const int32_t* rowptr = tables + c[5];
      const int32_t* col = rowptr + n + 1;
      const int64_t room = lim.room(c[2]);
      const int64_t n_col = lim.n_tables - (c[5] + n + 1);
      for (int64_t k = lanes.first; k < n; k += lanes.step) {
        T s = T(0);
        const int64_t lo = rowptr[k] < 0 ? 0 : rowptr[k];
        const int64_t hi = rowptr[k + 1] > n_col ? n_col : rowptr[k + 1];
        for (int64_t j = lo; j < hi; ++j) {
          const int32_t t = col[j];
          if (t >= 0 && t < room) s += a[t];
        }
        dst[k] += s;
      }
      break;
    }
    case kZero:
      for (int64_t k = lanes.first; k < n; k += lanes.step) dst[k] = T(0);
      break;
    case kAxpby: {
      const T* b = sp.ptr(c[3]);
      const T alpha = static_cast<T>(f1[0]), beta = static_cast<T>(f2[0]);
      for (int64_t k = lanes.first; k < n; k += lanes.step) dst[k] = alpha * a[k] + beta * b[k];
      break;
    }
    case kAxpy: {
      const T alpha = static_cast<T>(f1[0]);
      for (int64_t k = lanes.first; k < n; k += lanes.step) dst[k] += alpha * a[k];
      break;
    }
    case kSepCorr: {
      if (direct) {  // each output sums its rows' column passes itself (no scratch): the same
        // sums as the two passes below, whose intermediate values are these `part`s
        for (int64_t e = lanes.first; e < Ho * Wo; e += lanes.step) {
          const T v = forward_sum<T, true>(a, e / Wo, e % Wo, Ws, s1, p1, s2, p2, f1, l1, f2,
                                           l2);
          dst[e] = acc ? dst[e] + v : v;
        }
        break;
      }
      const int64_t rows = (Ho - 1) * s1 + l1;
      for (int64_t e = lanes.first; e < rows * Wo; e += lanes.step) {
        const int64_t r = e / Wo, j = e % Wo;
        const T* s = a + (r + p1) * Ws + p2 + j * s2;
        T v = T(0);
        for (int64_t b = 0; b < l2; ++b) v += static_cast<T>(f2[b]) * s[b];
        tmp[e] = v;
      }
      __syncthreads();
      for (int64_t e = lanes.first; e < Ho * Wo; e += lanes.step) {
        const int64_t i = e / Wo, j = e % Wo;
        T v = T(0);
        for (int64_t q = 0; q < l1; ++q) {
          v += static_cast<T>(f1[q]) * tmp[(i * s1 + q) * Wo + j];
        }
        dst[e] = acc ? dst[e] + v : v;
      }
      break;
    }
    case kSepCorrT: {
      // a is (Ho, Wo); dst is (Hs, Ws). tmp[i, col] for col in the touched column span.
      const int64_t wspan = (Wo - 1) * s2 + l2;
      const int64_t hspan = (Ho - 1) * s1 + l1;
      if (direct) {  // as below, each destination computing the intermediate values it reads
        for (int64_t e = lanes.first; e < hspan * wspan; e += lanes.step) {
          const int64_t r = e / wspan, cc = e % wspan;
          dst[(r + p1) * Ws + p2 + cc] +=
              transposed_sum<T, true>(a, r, cc, Ho, Wo, s1, s2, f1, l1, f2, l2);
        }
        break;
      }
      for (int64_t e = lanes.first; e < Ho * wspan; e += lanes.step) {
        const int64_t i = e / wspan, cc = e % wspan;
        T v = T(0);
        for (int64_t b = cc % s2; b < l2; b += s2) {
          const int64_t j = (cc - b) / s2;
          if (cc >= b && j < Wo) v += static_cast<T>(f2[b]) * a[i * Wo + j];
        }
        tmp[e] = v;
      }
      __syncthreads();
      for (int64_t e = lanes.first; e < hspan * wspan; e += lanes.step) {
        const int64_t r = e / wspan, cc = e % wspan;
        T v = T(0);
        for (int64_t q = r % s1; q < l1; q += s1) {
          const int64_t i = (r - q) / s1;
          if (r >= q && i < Ho) v += static_cast<T>(f1[q]) * tmp[i * wspan + cc];
        }
        dst[(r + p1) * Ws + p2 + cc] += v;
      }
      break;
    }
    case kCorr2d: {
      for (int64_t e = lanes.first; e < Ho * Wo; e += lanes.step) {
        const T v = forward_sum<T, false>(a, e / Wo, e % Wo, Ws, s1, p1, s2, p2, f1, l1, f2,
                                          l2);
        dst[e] = acc ? dst[e] + v : v;
      }
      break;
    }
    case kCorr2dT: {
      const int64_t wspan = (Wo - 1) * s2 + l2;
      const int64_t hspan = (Ho - 1) * s1 + l1;
      for (int64_t e = lanes.first; e < hspan * wspan; e += lanes.step) {
        const int64_t r = e / wspan, cc = e % wspan;
        dst[(r + p1) * Ws + p2 + cc] +=
            transposed_sum<T, false>(a, r, cc, Ho, Wo, s1, s2, f1, l1, f2, l2);
      }
      break;
    }
    default:
      break;  // instruction_ok refused it
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    linear_program_kernel(const T* __restrict__ x, T* __restrict__ out, T* __restrict__ ws_all,
                          const int64_t* __restrict__ instr, int64_t n_instr,
                          const int32_t* __restrict__ tables, const double* __restrict__ coefs,
                          int64_t planes, Limits lim) {
  const int64_t in_numel = lim.space[0], out_numel = lim.space[1];
  T* ws = ws_all + static_cast<int64_t>(blockIdx.x) * lim.space[2];
  for (int64_t p = blockIdx.x; p < planes; p += gridDim.x) {
    PlaneSpaces<T> sp{x + p * in_numel, out + p * out_numel, ws};
    for (int64_t q = 0; q < n_instr; ++q) {
      const int64_t* c = instr + q * kInstrCols;
      if (instruction_ok(c, lim)) {
        run_instruction<T>(c, tables, coefs, sp, lim, Lanes{threadIdx.x, blockDim.x}, false);
      }
      __syncthreads();
    }
  }
}

// An image (fewer planes than SMs): instruction q alone, on every plane, block (x, p) taking
// its share of plane p's outputs; the launches order the instructions. Each output is
// computed as in linear_program_kernel (the same bits).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    linear_program_split_kernel(const T* __restrict__ x, T* __restrict__ out,
                                T* __restrict__ ws_all, const int64_t* __restrict__ instr,
                                int64_t q, const int32_t* __restrict__ tables,
                                const double* __restrict__ coefs, Limits lim) {
  const int64_t p = blockIdx.y;
  PlaneSpaces<T> sp{x + p * lim.space[0], out + p * lim.space[1], ws_all + p * lim.space[2]};
  const int64_t* c = instr + q * kInstrCols;
  const Lanes lanes{static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x,
                    static_cast<int64_t>(gridDim.x) * blockDim.x};
  if (instruction_ok(c, lim)) run_instruction<T>(c, tables, coefs, sp, lim, lanes, true);
}

// SM count and L2 bytes of a device, read once per device.
struct DeviceShape {
  int sms = 0;
  int l2_bytes = 0;
};

DeviceShape device_shape(int device) {
  static std::mutex mutex;
  static std::unordered_map<int, DeviceShape> cache;
  const std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(device);
  if (it != cache.end()) return it->second;
  DeviceShape shape;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&shape.sms, cudaDevAttrMultiProcessorCount, device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&shape.l2_bytes, cudaDevAttrL2CacheSize, device));
  cache.emplace(device, shape);
  return shape;
}

at::Tensor linear_program_cuda(const at::Tensor& x, const at::Tensor& instr,
                               const at::Tensor& tables, const at::Tensor& coefs,
                               int64_t out_numel, int64_t ws_numel) {
  TORCH_CHECK(x.is_cuda(), "sstkd_ops::linear_program (CUDA): x must be a CUDA tensor, got ",
              x.device());
  check_program_args("sstkd_ops::linear_program (CUDA)", x, instr, tables, coefs, out_numel,
                     ws_numel);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto xc = x.contiguous();
  const auto ic = instr.contiguous();
  const auto tc = tables.contiguous();
  const auto cc = coefs.contiguous();
  const int64_t planes = xc.size(0);
  auto out = at::empty({planes, out_numel}, xc.options());
  if (planes == 0 || ic.size(0) == 0) return out;
  const DeviceShape shape = device_shape(x.device().index());
  const Limits lim{{xc.size(1), out_numel, ws_numel}, tc.numel(), cc.numel()};
  if (planes < shape.sms && xc.size(1) >= (int64_t(1) << 16) && planes <= 65535) {
    // An image: one launch per instruction, about 4 blocks per SM over the planes (the
    // instruction table stays on the device: nothing is read back).
    const int64_t parts = std::max<int64_t>(1, int64_t(4) * shape.sms / planes);
    auto ws = at::empty({planes, std::max<int64_t>(ws_numel, 1)}, xc.options());
    AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "linear_program_cuda_split", [&] {
      for (int64_t q = 0; q < ic.size(0); ++q) {
        linear_program_split_kernel<scalar_t>
            <<<dim3(static_cast<unsigned>(parts), static_cast<unsigned>(planes)), kThreads, 0,
               c10::cuda::getCurrentCUDAStream()>>>(
                xc.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), ws.data_ptr<scalar_t>(),
                ic.data_ptr<int64_t>(), q, tc.data_ptr<int32_t>(), cc.data_ptr<double>(), lim);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    });
    return out;
  }
  // Blocks: every SM busy, and up to 4 per SM while the live workspaces fit half the L2.
  const int64_t ws_bytes = std::max<int64_t>(ws_numel, 1) * xc.element_size();
  const int64_t fit = (static_cast<int64_t>(shape.l2_bytes) / 2) / ws_bytes;
  const int64_t blocks = std::min<int64_t>(
      planes, std::max<int64_t>(shape.sms, std::min<int64_t>(fit, int64_t(4) * shape.sms)));
  auto ws = at::empty({blocks, std::max<int64_t>(ws_numel, 1)}, xc.options());
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "linear_program_cuda", [&] {
    linear_program_kernel<scalar_t>
        <<<static_cast<unsigned>(blocks), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
            xc.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), ws.data_ptr<scalar_t>(),
            ic.data_ptr<int64_t>(), ic.size(0), tc.data_ptr<int32_t>(),
            cc.data_ptr<double>(), planes, lim);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace
}  // namespace linprog
}  // namespace sstkd

TORCH_LIBRARY_IMPL(sstkd_ops, CUDA, m) {
  m.impl("linear_program", &sstkd::linprog::linear_program_cuda);
}

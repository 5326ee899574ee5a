// A per-plane interpreter for fixed linear maps ("linear programs").
//
// The contourlet transform (and its adjoint) is a fixed linear map of each (H, W) plane,
// built from a handful of primitives: index gathers (polyphase splits, resampling, periodic
// and quincunx-periodic extension), separable or 2-D valid correlations with a stride and a
// phase, and linear combinations. sstkd_ops/linprog/program.py compiles a transform into a
// list of such instructions; the kernels here run the list on every plane, keeping the
// plane's intermediates in a small per-plane workspace (cache resident on the CPU).
//
// Operand addressing: an operand is `space << 40 | offset` with space 0 = the plane's input,
// 1 = the plane's output, 2 = the workspace. Instruction rows (int64) have kInstrCols columns:
//   0 op, 1 dst, 2 srcA, 3 srcB, 4 n, 5 table offset, 6 Hs, 7 Ws, 8 Ho, 9 Wo,
//   10 s1, 11 p1, 12 s2, 13 p2, 14 coef offset 1, 15 len 1, 16 coef offset 2, 17 len 2
// kSepCorr / kSepCorrT: srcB (column 3) is the workspace scratch region of the separable
// pass's intermediate. kScatterAdd: column 6 is the largest source count of a destination.
//
// Validation: validate_program() checks a program's operands, geometry and every table
// entry; sstkd_ops::linear_program_check runs it once per program on the host. Every call
// checks the argument metadata (check_program_args). The CPU kernel, whose tables are on the
// host already, re-runs validate_program (its gathers are runs: two ends checked per run);
// the CUDA kernel copies nothing to the host and re-checks each operand and table entry
// in-kernel, where a bad one is skipped, never dereferenced.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

#include "../hostdevice.h"

namespace sstkd { namespace linprog {

constexpr int kInstrCols = 18;
constexpr int64_t kSpaceShift = 40;
constexpr int64_t kOffsetMask = (int64_t(1) << kSpaceShift) - 1;

enum Op : int64_t {
  // dst[k] = srcA[table[k]] (0 where table[k] == -1),  k < n
  kGather = 0,
  // dst[table[k]] += srcA[k] (adjoint of kGather), stored as a gather-sum so that no
  // kernel needs atomics: with rowptr = table[0 : n+1], col = table[n+1 : ...],
  // dst[k] += sum_{j in [rowptr[k], rowptr[k+1])} srcA[col[j]],  k < n = dst size
  kScatterAdd = 1,
  // dst[k] = 0,                                        k < n
  kZero = 2,
  // dst[i, j] = sum_a sum_b f1[a] f2[b] srcA[s1 i + p1 + a, s2 j + p2 + b]
  //   srcA is (Hs, Ws), dst is (Ho, Wo)
  kSepCorr = 3,
  // adjoint of kSepCorr: dst (Hs, Ws) += the transpose applied to srcA (Ho, Wo)
  kSepCorrT = 4,
  // dst[k] = alpha srcA[k] + beta srcB[k], alpha = coef[c1], beta = coef[c2], k < n
  kAxpby = 5,
  // dst[i, j] = sum_a sum_b K[a, b] srcA[s1 i + p1 + a, s2 j + p2 + b],  K is (len1, len2)
  kCorr2d = 6,
  // adjoint of kCorr2d
  kCorr2dT = 7,
  // dst[k] += alpha srcA[k], alpha = coef[c1]
  kAxpy = 8,
  // kGather stored as runs (the C++ CPU kernel's form; the CUDA kernel skips it): column 6
  // holds the number of runs R, table[c5 : c5 + 4R] the runs (dst_start, length, src_start,
  // step), covering [0, n) in order: dst[dst_start + k] = srcA[src_start + step k], k <
  // length (src_start == -1: zeros, or nothing with kAccumulate)
  kGatherRuns = 9,
  // kGatherRuns scaled (the C++ CPU kernel's form of a gather feeding a linear combination):
  // dst[dst_start + k] (+)= alpha srcA[src_start + step k], alpha = coef[c14] (a zero run
  // gives alpha 0)
  kScaledGatherRuns = 10,
  // kCorr2d (s1 = s2 = 1, Wo even) at the outputs with (i + j) % 2 == parity (column 3) only,
  // zeros at the others (the C++ CPU kernel's form of a correlation whose other outputs nothing
  // reads: the quincunx filter banks)
  kCheckerCorr2d = 11,
  // kSepCorr with the column filter f1 applied first (the C++ CPU kernel's form of a filter
  // along columns whose result only a filter along rows reads): each output row filters its
  // source rows into a row of (Wo - 1) s2 + len2 values, rounded, then filters that row; no
  // scratch (column 3 unused)
  kSepCorrRowsFirst = 12,
  // kSepCorrRowsFirst (unit strides) of a virtual zero-interleaved source U (the C++ CPU
  // kernel's form of the LP's synthesis filter): U[2 r + ph1, 2 c + ph2] = srcA[r, c] (srcA
  // is (Hs, Ws), columns 6 and 7), zeros elsewhere; column 3 holds ph1 | ph2 << 1. The zeros'
  // taps are skipped (each sum is bitwise the same: adding a finite weight times a zero to a
  // sum started from +0 changes nothing)
  kUpsampledSepCorr = 13,
};
constexpr int64_t kRunCols = 4;

// Added to kGather, kGatherRuns, kScaledGatherRuns, kSepCorr, kSepCorrRowsFirst,
// kUpsampledSepCorr, kCorr2d: accumulate into dst (+=) instead of overwriting it.
// (kScatterAdd, kSepCorrT, kCorr2dT and kAxpy always accumulate.)
constexpr int64_t kAccumulate = 256;

// One plane's three address spaces; ptr() resolves an operand.
template <typename T>
struct PlaneSpaces {
  const T* in;
  T* out;
  T* ws;
  SSTKD_HD T* ptr(int64_t operand) const {
    const int64_t space = operand >> kSpaceShift;
    const int64_t off = operand & kOffsetMask;
    if (space == 0) return const_cast<T*>(in) + off;
    if (space == 1) return out + off;
    return ws + off;
  }
};

// Check every instruction's operands against the sizes of the spaces, the tables and the
// coefficient array (TORCH_CHECK with the instruction index on failure). Host pointers.
// `first` > 0 checks only instructions [first, n_instr) (a share of a check split across
// threads; messages keep the program's instruction indices).
void validate_program(const int64_t* instr, int64_t n_instr, const int32_t* tables,
                      int64_t n_tables, int64_t n_coefs, int64_t in_numel, int64_t out_numel,
                      int64_t ws_numel, int64_t first = 0);

// Elements of the separable pass's intermediate of kSepCorr / kSepCorrT row `c`.
SSTKD_HD int64_t sep_scratch_numel(const int64_t* c) {
  const int64_t op = c[0] & ~kAccumulate;
  if (op == kSepCorr) return ((c[8] - 1) * c[10] + c[15]) * c[9];
  return c[8] * ((c[9] - 1) * c[12] + c[17]);
}

// TORCH_CHECKs of every argument of sstkd_ops::linear_program that need no table scan:
// dtypes, dims, devices (all on x's), sizes. `where` names the kernel in messages.
void check_program_args(const char* where, const at::Tensor& x, const at::Tensor& instr,
                        const at::Tensor& tables, const at::Tensor& coefs, int64_t out_numel,
                        int64_t ws_numel);

}  // namespace linprog
}  // namespace sstkd

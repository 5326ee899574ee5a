// Schema of the linear-program ops (kernels in cpu/ and cuda/) and program validation.
#include "linear_program.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

namespace sstkd { namespace linprog {

namespace {

struct Bounds {
  int64_t sizes[3];
  void check(int64_t q, const char* what, int64_t operand, int64_t numel) const {
    const int64_t space = operand >> kSpaceShift;
    const int64_t off = operand & kOffsetMask;
    TORCH_CHECK(space >= 0 && space <= 2, "sstkd_ops::linear_program: instruction ", q, ": ",
                what, " has unknown address space ", space);
    TORCH_CHECK(numel >= 0 && off + numel <= sizes[space], "sstkd_ops::linear_program: "
                "instruction ", q, ": ", what, " [", off, ", ", off + numel,
                ") exceeds its space of ", sizes[space], " elements");
  }
  int64_t room(int64_t operand) const {
    return sizes[operand >> kSpaceShift] - (operand & kOffsetMask);
  }
};

}  // namespace

void validate_program(const int64_t* instr, int64_t n_instr, const int32_t* tables,
                      int64_t n_tables, int64_t n_coefs, int64_t in_numel, int64_t out_numel,
                      int64_t ws_numel, int64_t first) {
  const Bounds bounds{{in_numel, out_numel, ws_numel}};
  for (int64_t q = first; q < n_instr; ++q) {
    const int64_t* c = instr + q * kInstrCols;
    const int64_t op = c[0] & ~kAccumulate;
    const int64_t n = c[4];
    TORCH_CHECK((c[1] >> kSpaceShift) != 0, "sstkd_ops::linear_program: instruction ", q,
                " writes to the read-only input");
    auto check_table = [&](int64_t len, int64_t limit, int64_t first, int32_t lowest = 0) {
      TORCH_CHECK(c[5] >= 0 && c[5] + first + len <= n_tables, "sstkd_ops::linear_program: "
                  "instruction ", q, ": table range exceeds the tables");
      const int32_t* t = tables + c[5] + first;
      for (int64_t k = 0; k < len; ++k) {
        TORCH_CHECK(t[k] >= lowest && t[k] < limit, "sstkd_ops::linear_program: instruction ",
                    q, ": table entry ", t[k], " outside [", lowest, ", ", limit, ")");
      }
    };
    switch (op) {
      case kGather:
        bounds.check(q, "dst", c[1], n);
        check_table(n, bounds.room(c[2]), 0, -1);  // -1 reads zero
        break;
      case kGatherRuns:
      case kScaledGatherRuns: {
        bounds.check(q, "dst", c[1], n);
        TORCH_CHECK(op == kGatherRuns || (c[14] >= 0 && c[14] < n_coefs),
                    "sstkd_ops::linear_program: instruction ", q, ": coefficient out of range");
        const int64_t n_runs = c[6];
        TORCH_CHECK(n_runs >= 0 && c[5] >= 0 && c[5] + kRunCols * n_runs <= n_tables,
                    "sstkd_ops::linear_program: instruction ", q, ": runs exceed the tables");
        const int64_t room = bounds.room(c[2]);
        int64_t next = 0;  // the runs cover [0, n) in order
        for (int64_t r = 0; r < n_runs; ++r) {
          const int32_t* run = tables + c[5] + kRunCols * r;
          const int64_t len = run[1], src = run[2], last = src + int64_t(run[3]) * (len - 1);
          TORCH_CHECK(run[0] == next && len >= 1 && len <= n - next,
                      "sstkd_ops::linear_program: instruction ", q, ": run ", r, " covers [",
                      run[0], ", ", run[0] + len, "), expected a run starting at ", next);
          TORCH_CHECK(src == -1 || (src >= 0 && src < room && last >= 0 && last < room),
                      "sstkd_ops::linear_program: instruction ", q, ": run ", r, " reads [",
                      src, " .. ", last, "] outside [0, ", room, ")");
          next += len;
        }
        TORCH_CHECK(next == n, "sstkd_ops::linear_program: instruction ", q, ": runs cover ",
                    next, " of ", n, " elements");
        break;
      }
      case kScatterAdd: {
        bounds.check(q, "dst", c[1], n);
        TORCH_CHECK(c[5] >= 0 && c[5] + n + 1 <= n_tables, "sstkd_ops::linear_program: "
                    "instruction ", q, ": rowptr exceeds the tables");
        const int32_t* rowptr = tables + c[5];
        for (int64_t k = 0; k < n; ++k) {
          TORCH_CHECK(rowptr[k] <= rowptr[k + 1], "sstkd_ops::linear_program: instruction ",
                      q, ": rowptr is not monotone");
        }
        TORCH_CHECK(rowptr[0] == 0, "sstkd_ops::linear_program: instruction ", q,
                    ": rowptr must start at 0");
        check_table(rowptr[n], bounds.room(c[2]), n + 1);
        break;
      }
      case kZero:
        bounds.check(q, "dst", c[1], n);
        break;
      case kAxpby:
      case kAxpy:
        bounds.check(q, "dst", c[1], n);
        bounds.check(q, "srcA", c[2], n);
        TORCH_CHECK(c[14] >= 0 && c[14] < n_coefs, "sstkd_ops::linear_program: instruction ",
                    q, ": coefficient out of range");
        if (op == kAxpby) {
          bounds.check(q, "srcB", c[3], n);
          TORCH_CHECK(c[16] >= 0 && c[16] < n_coefs, "sstkd_ops::linear_program: "
                      "instruction ", q, ": coefficient out of range");
        }
        break;
      case kSepCorr:
      case kSepCorrT:
      case kSepCorrRowsFirst:
      case kCorr2d:
      case kCorr2dT:
      case kCheckerCorr2d:
      case kUpsampledSepCorr: {
        const bool transposed = (op == kSepCorrT || op == kCorr2dT);
        const bool upsampled = op == kUpsampledSepCorr;
        const bool sep = (op == kSepCorr || op == kSepCorrT || op == kSepCorrRowsFirst ||
                          upsampled);
        const int64_t Hs = c[6], Ws = c[7], Ho = c[8], Wo = c[9];
        const int64_t s1 = c[10], p1 = c[11], s2 = c[12], p2 = c[13];
        const int64_t l1 = c[15], l2 = c[17];
        // an upsampled filter reads its virtual plane's rows up to Ho - 1 + p1 + l1 - 1, the
        // last nonzero one being source row (Ho + p1 + l1 - 2 - ph1) / 2 (columns alike)
        const int64_t ph1 = c[3] & 1, ph2 = c[3] >> 1;
        const bool inside =
            upsampled ? c[3] >= 0 && c[3] <= 3 && s1 == 1 && s2 == 1 &&
                            (Ho + p1 + l1 - 2 - ph1) / 2 < Hs && (Wo + p2 + l2 - 2 - ph2) / 2 < Ws
                      : (Ho - 1) * s1 + p1 + l1 <= Hs && (Wo - 1) * s2 + p2 + l2 <= Ws;
        TORCH_CHECK(Ho >= 1 && Wo >= 1 && s1 >= 1 && s2 >= 1 && p1 >= 0 && p2 >= 0 &&
                        l1 >= 1 && l2 >= 1 && inside,
                    "sstkd_ops::linear_program: instruction ", q, ": filter geometry "
                    "out of range");
        const bool checker = op == kCheckerCorr2d;
        TORCH_CHECK(!checker || (s1 == 1 && s2 == 1 && Wo % 2 == 0 && (c[3] == 0 || c[3] == 1)),
                    "sstkd_ops::linear_program: instruction ", q, ": a checkerboard "
                    "correlation needs unit strides, an even width and a parity of 0 or 1");
        bounds.check(q, transposed ? "dst" : "src", transposed ? c[1] : c[2], Hs * Ws);
        bounds.check(q, transposed ? "src" : "dst", transposed ? c[2] : c[1], Ho * Wo);
        const int64_t ncoef = sep ? std::max(c[14] + l1, c[16] + l2) : c[14] + l1 * l2;
        TORCH_CHECK(c[14] >= 0 && c[16] >= 0 && ncoef <= n_coefs, "sstkd_ops::linear_program:"
                    " instruction ", q, ": filter coefficients out of range");
        if (sep && op != kSepCorrRowsFirst && !upsampled) {  // the ops with a scratch
          const int64_t need = sep_scratch_numel(c);
          TORCH_CHECK((c[3] >> kSpaceShift) == 2, "sstkd_ops::linear_program: instruction ",
                      q, ": the separable scratch must be in the workspace");
          bounds.check(q, "scratch", c[3], need);
          // the scratch may not overlap the operands (same space only for the workspace)
          const int64_t lo = c[3] & kOffsetMask, hi = lo + need;
          const int64_t big = Hs * Ws, small = Ho * Wo;
          const int64_t operands[2][2] = {{c[1], transposed ? big : small},
                                          {c[2], transposed ? small : big}};
          for (const auto& operand : operands) {
            const int64_t off = operand[0] & kOffsetMask, len = operand[1];
            TORCH_CHECK((operand[0] >> kSpaceShift) != 2 || off + len <= lo || hi <= off,
                        "sstkd_ops::linear_program: instruction ", q, ": the separable "
                        "scratch overlaps an operand");
          }
        }
        break;
      }
      default:
        TORCH_CHECK(false, "sstkd_ops::linear_program: unknown opcode ", c[0],
                    " at instruction ", q);
    }
  }
}

void check_program_args(const char* where, const at::Tensor& x, const at::Tensor& instr,
                        const at::Tensor& tables, const at::Tensor& coefs, int64_t out_numel,
                        int64_t ws_numel) {
  TORCH_CHECK(x.dim() == 2, where, ": x must be (planes, numel), got sizes ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, where,
              ": x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(x.size(1) <= kOffsetMask, where, ": x has too many values per plane (",
              x.size(1), ")");
  TORCH_CHECK(instr.scalar_type() == at::kLong && instr.dim() == 2 &&
                  instr.size(1) == kInstrCols,
              where, ": instr must be int64 (n, ", kInstrCols, "), got ", instr.scalar_type(),
              " ", instr.sizes());
  TORCH_CHECK(tables.scalar_type() == at::kInt && tables.dim() == 1 && tables.numel() >= 1,
              where, ": tables must be a non-empty 1-D int32 tensor, got ",
              tables.scalar_type(), " ", tables.sizes());
  TORCH_CHECK(coefs.scalar_type() == at::kDouble && coefs.dim() == 1 && coefs.numel() >= 1,
              where, ": coefs must be a non-empty 1-D float64 tensor, got ",
              coefs.scalar_type(), " ", coefs.sizes());
  for (const at::Tensor* arg : {&instr, &tables, &coefs}) {
    TORCH_CHECK(arg->device() == x.device(), where, ": every tensor must be on x's device (",
                x.device(), "), got instr/tables/coefs on ", arg->device());
  }
  TORCH_CHECK(out_numel >= 0 && out_numel <= kOffsetMask && ws_numel >= 0 &&
                  ws_numel <= kOffsetMask,
              where, ": out_numel and ws_numel must be in [0, 2**40), got ", out_numel, ", ",
              ws_numel);
}

namespace {

// sstkd_ops::linear_program_check: validate_program on host tensors; returns nothing.
void linear_program_check(const at::Tensor& instr, const at::Tensor& tables,
                          const at::Tensor& coefs, int64_t in_numel, int64_t out_numel,
                          int64_t ws_numel) {
  const char* where = "sstkd_ops::linear_program_check";
  TORCH_CHECK(instr.device().is_cpu() && tables.device().is_cpu() && coefs.device().is_cpu(),
              where, ": instr, tables and coefs must be CPU tensors (checked once per program "
              "on the host), got ", instr.device(), ", ", tables.device(), ", ",
              coefs.device());
  TORCH_CHECK(instr.scalar_type() == at::kLong && instr.dim() == 2 &&
                  instr.size(1) == kInstrCols,
              where, ": instr must be int64 (n, ", kInstrCols, "), got ", instr.scalar_type(),
              " ", instr.sizes());
  TORCH_CHECK(tables.scalar_type() == at::kInt && tables.dim() == 1, where,
              ": tables must be 1-D int32, got ", tables.scalar_type(), " ", tables.sizes());
  TORCH_CHECK(coefs.scalar_type() == at::kDouble && coefs.dim() == 1, where,
              ": coefs must be 1-D float64, got ", coefs.scalar_type(), " ", coefs.sizes());
  TORCH_CHECK(in_numel >= 0 && in_numel <= kOffsetMask && out_numel >= 0 &&
                  out_numel <= kOffsetMask && ws_numel >= 0 && ws_numel <= kOffsetMask,
              where, ": sizes must be in [0, 2**40), got ", in_numel, ", ", out_numel, ", ",
              ws_numel);
  const auto ic = instr.contiguous();
  const auto tc = tables.contiguous();
  validate_program(ic.data_ptr<int64_t>(), ic.size(0), tc.data_ptr<int32_t>(), tc.numel(),
                   coefs.numel(), in_numel, out_numel, ws_numel);
}

const at::Tensor& index_table(const char* where, const at::Tensor& table) {
  TORCH_CHECK(table.device().is_cpu() && table.scalar_type() == at::kLong && table.dim() == 1,
              where, ": table must be a 1-D int64 CPU tensor, got ", table.scalar_type(), " ",
              table.sizes(), " on ", table.device());
  return table;
}

// sstkd_ops::gather_runs: the greedy runs (kGatherRuns) of a gather's index table; entries
// below 0 read zero. A run starts where the last one ended and takes its next element's step
// for as long as it holds: (R, 4) int64 rows (dst_start, length, src_start or -1, step).
at::Tensor gather_runs(const at::Tensor& table) {
  const auto tc = index_table("sstkd_ops::gather_runs", table).contiguous();
  const int64_t* t = tc.data_ptr<int64_t>();
  const int64_t n = tc.numel();
  std::vector<int64_t> runs;
  for (int64_t s = 0; s < n;) {
    int64_t e = s, step = 0;
    if (t[s] < 0) {
      while (e + 1 < n && t[e + 1] < 0) ++e;
    } else if (s + 1 < n && t[s + 1] >= 0) {
      step = t[s + 1] - t[s];
      e = s + 1;
      while (e + 1 < n && t[e + 1] >= 0 && t[e + 1] - t[e] == step) ++e;
    }
    runs.insert(runs.end(), {s, e - s + 1, t[s] < 0 ? -1 : t[s], step});
    s = e + 1;
  }
  const int64_t n_runs = int64_t(runs.size()) / kRunCols;
  return at::tensor(runs, at::kLong).view({n_runs, kRunCols});
}

// sstkd_ops::scatter_layers: a scatter-add dst[table[k]] += src[k] (entries below 0 send
// nothing) as gathers: row m of the (L, n_dst) result holds each destination's m-th source
// in increasing k, or -1; L is the largest number of sources of a destination.
at::Tensor scatter_layers(const at::Tensor& table, int64_t n_dst) {
  const char* where = "sstkd_ops::scatter_layers";
  const auto tc = index_table(where, table).contiguous();
  const int64_t* t = tc.data_ptr<int64_t>();
  const int64_t n = tc.numel();
  TORCH_CHECK(n_dst >= 0, where, ": n_dst must be >= 0, got ", n_dst);
  std::vector<int64_t> count(n_dst, 0);
  int64_t layers = 0;
  for (int64_t k = 0; k < n; ++k) {
    if (t[k] < 0) continue;
    TORCH_CHECK(t[k] < n_dst, where, ": table entry ", t[k], " at ", k, " outside [0, ",
                n_dst, ")");
    layers = std::max(layers, ++count[t[k]]);
  }
  auto out = at::full({layers, n_dst}, -1, at::kLong);
  int64_t* o = out.data_ptr<int64_t>();
  std::fill(count.begin(), count.end(), 0);
  for (int64_t k = 0; k < n; ++k) {
    if (t[k] >= 0) o[count[t[k]]++ * n_dst + t[k]] = k;
  }
  return out;
}

}  // namespace

}  // namespace linprog
}  // namespace sstkd

TORCH_LIBRARY_FRAGMENT(sstkd_ops, m) {
  // Packing of programs for the C++ CPU kernel (sstkd_ops.linprog.program.Program.packed_runs).
  m.def("gather_runs(Tensor table) -> Tensor");
  m.def("scatter_layers(Tensor table, int n_dst) -> Tensor");
  // x: (P, in_numel) planes; returns (P, out_numel). `instr` (n, 18) int64, `tables` int32,
  // `coefs` float64 (cast to x's dtype by the kernel), all on x's device and validated by
  // linear_program_check; `ws_numel` workspace elements per plane (with the scratch).
  // Its backward is the transpose program, run by the same op (sstkd_ops.contourlet.autograd).
  m.def(
      "linear_program(Tensor x, Tensor instr, Tensor tables, Tensor coefs, int out_numel, "
      "int ws_numel) -> Tensor");
  // Checks a program's tables (CPU tensors) once: operands, geometry, every table entry.
  m.def(
      "linear_program_check(Tensor instr, Tensor tables, Tensor coefs, int in_numel, "
      "int out_numel, int ws_numel) -> ()");
}

TORCH_LIBRARY_IMPL(sstkd_ops, CPU, m) {
  m.impl("linear_program_check", &sstkd::linprog::linear_program_check);
  m.impl("gather_runs", &sstkd::linprog::gather_runs);
  m.impl("scatter_layers", &sstkd::linprog::scatter_layers);
}

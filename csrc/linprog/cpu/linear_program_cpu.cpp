// CPU kernel of sstkd_ops::linear_program. Many planes: one plane per task, parallel over
// planes. Fewer planes than threads (an image, a few large planes): the planes run one after
// another and each instruction splits its output rows (or elements) across the threads.
// Both schedules compute every output element with the same operations in the same order,
// so results do not depend on the thread count (nor on the instruction set: plane_kernels.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include "../linear_program.h"
#include "plane_kernels.h"

namespace sstkd { namespace linprog {
namespace {

// One plane's workspace, uninitialised. Image-sized ones are 2 MiB aligned and advised as
// transparent huge pages (Linux): the resampling gathers read diagonals, a new 4 KiB page per
// element, and miss the TLB far less on 2 MiB pages; the first touch also faults once per
// 2 MiB instead of once per 4 KiB.
class Workspace {
 public:
  static constexpr size_t kHuge = size_t(1) << 21;
  explicit Workspace(size_t bytes) {
    bytes = std::max<size_t>(bytes, 1);
    if (bytes >= 2 * kHuge) {
      bytes = (bytes + kHuge - 1) / kHuge * kHuge;
      ptr_ = std::aligned_alloc(kHuge, bytes);
#ifdef MADV_HUGEPAGE
      if (ptr_ != nullptr) madvise(ptr_, bytes, MADV_HUGEPAGE);  // advice: failure is harmless
#endif
    } else {
      ptr_ = std::malloc(bytes);
    }
    TORCH_CHECK(ptr_ != nullptr, "sstkd_ops::linear_program: cannot allocate a workspace of ",
                bytes, " bytes");
    bytes_ = bytes;
  }
  ~Workspace() { std::free(ptr_); }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Largest workspace kept by a thread between calls.
constexpr size_t kKeepBytes = size_t(256) << 20;

// The workspace of a call that runs its planes on the calling thread (an image split across
// the threads, or one thread), kept by that thread between calls up to kKeepBytes and replaced
// by a larger one when needed: a fresh one paid its page faults, and the kernel's huge-page
// compaction, on every call (one 1024^2 9-7/pkva float64 plane on 2 threads: ~155 ms instead of
// ~48 ms per call for the first calls of a process). A larger workspace is `own`ed by the
// call and freed after it. Worker threads (planes in parallel) allocate theirs per call.
const Workspace& calling_thread_workspace(size_t bytes, std::unique_ptr<Workspace>& own) {
  thread_local std::unique_ptr<Workspace> kept;
  if (bytes > kKeepBytes) {
    own = std::make_unique<Workspace>(bytes);
    return *own;
  }
  if (!kept || kept->bytes() < bytes) {
    kept.reset();  // the old one goes before the new one comes
    kept = std::make_unique<Workspace>(bytes);
  }
  return *kept;
}

at::Tensor linear_program_cpu(const at::Tensor& x, const at::Tensor& instr,
                              const at::Tensor& tables, const at::Tensor& coefs,
                              int64_t out_numel, int64_t ws_numel) {
  check_program_args("sstkd_ops::linear_program (CPU)", x, instr, tables, coefs, out_numel,
                     ws_numel);
  const auto xc = x.contiguous();
  const auto ic = instr.contiguous();
  const auto tc = tables.contiguous();
  const int64_t planes = xc.size(0);
  const int64_t in_numel = xc.size(1);
  auto out = at::empty({planes, out_numel}, xc.options());
  if (planes == 0) return out;
  const int64_t n_instr = ic.size(0);
  const int64_t* ip = ic.data_ptr<int64_t>();
  // Fewer planes than threads (an image): the threads share each instruction, and the check.
  const bool split = planes < at::get_num_threads() && !at::in_parallel_region();
  // On the host the full check is a plain scan (no device copy): cheap next to the planes.
  const auto check = [&](int64_t q0, int64_t q1) {
    validate_program(ip, q1, tc.data_ptr<int32_t>(), tc.numel(), coefs.numel(), in_numel,
                     out_numel, ws_numel, q0);
  };
  if (split) {
    at::parallel_for(0, n_instr, 16, check);
  } else {
    check(0, n_instr);
  }
  const CpuIsa isa = cpu_isa();
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "linear_program_cpu", [&] {
    const auto cc = coefs.contiguous().to(xc.scalar_type());
    const scalar_t* cp = cc.data_ptr<scalar_t>();
    const int32_t* tp = tc.data_ptr<int32_t>();
    const scalar_t* xp = xc.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    // Workspaces are not zero-filled (programs write before they read, as on CUDA): for a
    // large plane the fill was a serial pass as long as a fifth of the program.
    const size_t ws_bytes = size_t(ws_numel) * sizeof(scalar_t);
    if (split || at::get_num_threads() == 1) {  // every plane on the calling thread
      std::unique_ptr<Workspace> own;
      const Workspace& ws = calling_thread_workspace(ws_bytes, own);
      for (int64_t p = 0; p < planes; ++p) {
        PlaneSpaces<scalar_t> sp{xp + p * in_numel, op + p * out_numel, ws.as<scalar_t>()};
        run_plane<scalar_t>(isa, ip, n_instr, tp, cp, sp, split);
      }
      return;
    }
    at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
      const Workspace ws(ws_bytes);
      for (int64_t p = begin; p < end; ++p) {
        PlaneSpaces<scalar_t> sp{xp + p * in_numel, op + p * out_numel, ws.as<scalar_t>()};
        run_plane<scalar_t>(isa, ip, n_instr, tp, cp, sp, /*split=*/false);
      }
    });
  });
  return out;
}

}  // namespace
}  // namespace linprog
}  // namespace sstkd

TORCH_LIBRARY_IMPL(sstkd_ops, CPU, m) {
  m.impl("linear_program", &sstkd::linprog::linear_program_cpu);
}

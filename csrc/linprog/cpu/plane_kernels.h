// The per-plane kernels of the CPU linear program, built once per x86 instruction set from
// plane_kernels_impl.h: plane_kernels.cpp (the baseline, every CPU), plane_kernels_avx2.cpp and
// plane_kernels_avx512.cpp (x86-64 with GCC; empty elsewhere). Each call runs the widest one
// this CPU supports. Floating-point contraction is off in every build (setup.py:
// -ffp-contract=off) and the kernels fix the order of every sum, so all of them compute
// bitwise equal results: only the vector width differs.
#pragma once
#include <cstdint>

#include "../linear_program.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SSTKD_X86_VARIANTS 1
#else
#define SSTKD_X86_VARIANTS 0
#endif

namespace sstkd { namespace linprog {

enum class CpuIsa : int { kBase = 0, kAvx2 = 1, kAvx512 = 2 };

// The instruction set of the next call: the widest the CPU supports and this build has,
// lowered by SSTKD_CPU_ISA=base|avx2 (read on every call; for comparing the builds).
CpuIsa cpu_isa();
const char* cpu_isa_name(CpuIsa isa);

// Runs the program on one plane with `isa`'s build; `split` spreads each instruction over
// the threads (same arithmetic in the same order as one thread).
template <typename T>
void run_plane(CpuIsa isa, const int64_t* instr, int64_t n_instr, const int32_t* tables,
               const T* coefs, const PlaneSpaces<T>& sp, bool split);

}  // namespace linprog
}  // namespace sstkd

"""Compile every Triton kernel of sstkd_ops for a real GPU target, without a GPU.

The CPU test run executes the Triton kernels only through the interpreter, which accepts code
the GPU compiler may reject (types, shapes of ``tl.dot``, register budgets) and launches that
the GPU would refuse (shared memory over the per-block limit). This script closes that gap in
two steps, each in its own process:

1. ``record``: runs every public op with ``backend='triton'`` under ``TRITON_INTERPRET=1`` on
   small inputs (float32 and float64, forward and backward, every texture op at 8, 32, 64,
   128, 200 and 300 levels) and records each kernel launch: kernel, argument types,
   ``tl.constexpr`` values and the level counts that reached it.
2. ``compile``: compiles each distinct launch with Triton's own compiler for ``--arch``
   (default sm_90, H100/H200) down to a cubin (Triton ships LLVM and ptxas), reports the
   registers, spills and shared memory, and counts the approximate float32 divisions and
   square roots (``div.full.f32``, ``div.approx.f32``, ``sqrt.approx.f32``) in the PTX; ends
   with a table kernel x levels x dtype.

Usage: ``python scripts/check_triton_kernels.py [--arch 90] [--spill-limit BYTES]
[--smem-limit BYTES]``.
Exit status 1 when a kernel fails to compile, takes longer than ``--timeout`` seconds, spills
more than ``--spill-limit`` bytes (default 0), asks for more shared memory than
``--smem-limit`` (default 232,448 B: the most dynamic shared memory of one block on H100 and
H200), or is a texture-statistics kernel (they decide codes by thresholds) with an approximate
float32 division or square root. Skips (exit 0) when Triton is not installed.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ record
def _type_of(value) -> str:
    import torch

    if isinstance(value, torch.Tensor):
        return "*" + {torch.float32: "fp32", torch.float64: "fp64", torch.float16: "fp16",
                      torch.int32: "i32", torch.int64: "i64", torch.bool: "i1"}[value.dtype]
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        return "i32" if -2**31 <= value < 2**31 else "i64"
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"unsupported kernel argument {type(value).__name__}")


LEVELS = (8, 32, 64, 128, 200, 300)  # 32: the default; 200, 300: several lane tiles
SMEM_LIMIT = 232_448  # most dynamic shared memory per block on sm_90 (H100, H200)
SPILL_LIMIT = 0
EXACT_MODULES = ("qco", "dtiem", "cos_sim")  # texture kernels: thresholds decide codes
APPROX = re.compile(r"\b(div\.full\.f32|div\.approx(?:\.ftz)?\.f32|sqrt\.approx(?:\.ftz)?\.f32)")


def _exercise(tag, level_counts: tuple[int, ...], contourlet: bool) -> None:
    """Run every op on the Triton backend (forward and backward) on small inputs; ``tag(name)``
    labels the launches that follow."""
    import torch

    import sstkd_ops
    from sstkd_ops.contourlet.tracer import programs
    from sstkd_ops.linprog.runtime import packed_on
    from sstkd_ops.linprog.triton_kernel import run as run_program

    for dtype in (torch.float32, torch.float64):
        for levels in level_counts:
            tag(str(levels))
            x = torch.randn(2, 3, 7, 6, dtype=dtype, requires_grad=True)
            te = sstkd_ops.texture_equalize(x, levels, 2, 0.5, ((1, 1), (0, -1)),
                                            backend="triton")
            tw = sstkd_ops.texture_equalize(x, levels, 2, 0.5, ((1, 1), (0, -1)),
                                            weights=torch.rand(2, 7, 6, dtype=dtype),
                                            backend="triton")  # importance-weighted kernels
            q1 = sstkd_ops.qco_1d(x, levels, backend="triton")
            f = torch.randn(2, 20, levels, dtype=dtype, requires_grad=True)  # 2 channel steps
            tem = sstkd_ops.qco_1d_tem(f, q1.cos_sim, q1.levels, backend="triton")
            _, sta2 = sstkd_ops.qco_2d(x, levels, 1, backend="triton")
            (te.q.sum() + te.cooc.sum() + te.hist.sum() + tw.q.sum() + tw.cooc.sum()
             + tw.hist.sum() + q1.sta.sum() + tem.sum() + sta2.sum()).backward()
        if not contourlet:
            continue
        tag("-")
        x = torch.randn(1, 2, 32, 32, dtype=dtype, requires_grad=True)
        low, bands = sstkd_ops.pdfb_dec(x, "9-7", "pkva", (2, 3), backend="triton")
        rec = sstkd_ops.pdfb_rec(low, bands, "9-7", "pkva", backend="triton")
        (rec.sum() + low.sum() + sum(b.sum() for lev in bands for b in lev)).backward()
        # an image's launches: one per instruction, several program instances per plane
        prog = programs("pdfb_dec", ((32, 32),), "9-7", "pkva", (2, 3))[0]
        instr, tables, coefs, ws = packed_on(prog, torch.device("cpu"))
        run_program(torch.randn(1, prog.in_numel, dtype=dtype), instr, tables, coefs,
                    prog.out_numel, ws, split=2)


def record(out: Path, level_counts: tuple[int, ...], contourlet: bool) -> int:
    from triton.runtime.interpreter import InterpretedFunction

    launches: dict[str, dict] = {}
    original = InterpretedFunction.run
    current = ["-"]

    def run(self, *args, grid, warmup, **kwargs):
        fn = self.fn
        params = inspect.signature(fn).parameters
        options = {k: v for k, v in kwargs.items() if k not in params}  # num_warps, ...
        bound = inspect.signature(fn).bind(*args, **{k: v for k, v in kwargs.items()
                                                      if k in params})
        sig, consts = {}, {}
        for name, value in bound.arguments.items():
            ann = params[name].annotation
            if "constexpr" in str(ann):
                sig[name] = "constexpr"
                consts[name] = value
            else:
                sig[name] = _type_of(value)
        spec = {"module": fn.__module__, "kernel": fn.__name__, "signature": sig,
                "constexprs": consts, "options": options}
        entry = launches.setdefault(json.dumps(spec, sort_keys=True), {**spec, "levels": []})
        if current[0] not in entry["levels"]:
            entry["levels"].append(current[0])
        return original(self, *args, grid=grid, warmup=warmup, **kwargs)

    InterpretedFunction.run = run
    try:
        _exercise(lambda name: current.__setitem__(0, name), level_counts, contourlet)
    finally:
        InterpretedFunction.run = original
    out.write_text(json.dumps(list(launches.values()), indent=1))
    return 0


# ----------------------------------------------------------------------------- compile
def _ptxas_stats(ptxas: Path, ptx: str, arch: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        res = subprocess.run([str(ptxas), "-v", f"--gpu-name=sm_{arch}a" if arch >= 90 else
                              f"--gpu-name=sm_{arch}", str(src), "-o", str(Path(tmp) / "k.o")],
                             capture_output=True, text=True)
    text = res.stdout + res.stderr
    regs = re.search(r"Used (\d+) registers", text)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    return {"registers": int(regs.group(1)) if regs else None,
            "spill_store_bytes": int(spill.group(1)) if spill else None,
            "spill_load_bytes": int(spill.group(2)) if spill else None}


def _compile_one(spec: dict, arch: int, ptxas: Path, queue) -> None:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    try:
        kernel = getattr(importlib.import_module(spec["module"]), spec["kernel"])
        src = ASTSource(fn=kernel, signature=spec["signature"], constexprs=spec["constexprs"])
        compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                                  options=spec["options"] or None)
        ptx = compiled.asm["ptx"]
        stats = _ptxas_stats(ptxas, ptx, arch) if ptxas.is_file() else {}
        approx: dict[str, int] = {}
        for op in APPROX.findall(ptx):
            approx[op] = approx.get(op, 0) + 1
        queue.put({"ok": True, "shared": compiled.metadata.shared, "approx": approx, **stats})
    except Exception as exc:  # reported by the parent
        queue.put({"ok": False, "error": f"{type(exc).__name__}: "
                                         f"{str(exc).splitlines()[0][:300] if str(exc) else ''}"})


def _dtype(spec: dict) -> str:
    return next(t for t in spec["signature"].values() if t.startswith("*"))[1:]


def _name(spec: dict) -> str:
    return f"{spec['module'].rsplit('.', 1)[-1]}.{spec['kernel']}"


def _label(spec: dict) -> str:
    consts = ",".join(f"{k}={v}" for k, v in {**spec["constexprs"], **spec["options"]}.items())
    return f"{_name(spec)} {consts} [{_dtype(spec)}]"


def _problems(spec: dict, res: dict, spill_limit: int, smem_limit: int) -> list[str]:
    """Why a compiled launch fails the check (empty: it passes)."""
    out = []
    spilled = max(res.get("spill_store_bytes") or 0, res.get("spill_load_bytes") or 0)
    if spilled > spill_limit:
        out.append(f"SPILL {spilled} B > {spill_limit} B")
    if res["shared"] > smem_limit:
        out.append(f"SMEM {res['shared']} B > {smem_limit} B")
    if res["approx"] and spec["module"].rsplit(".", 1)[-1] in EXACT_MODULES:
        out.append("APPROX " + ", ".join(f"{k} x{v}" for k, v in sorted(res["approx"].items())))
    return out


def _table(rows: list[tuple[dict, dict]]) -> None:
    """kernel x levels x dtype -> registers, spill bytes, shared memory (the worst launch of
    the kernel at that level count and dtype)."""
    cells: dict[tuple[str, str, str], list[int]] = {}
    for spec, res in rows:
        spill = max(res.get("spill_store_bytes") or 0, res.get("spill_load_bytes") or 0)
        for lv in spec.get("levels") or ["-"]:
            key = (_name(spec), lv, _dtype(spec))
            old = cells.get(key, [0, 0, 0])
            cells[key] = [max(old[0], res.get("registers") or 0), max(old[1], spill),
                          max(old[2], res["shared"])]

    def order(key):
        return key[0], int(key[1]) if key[1].isdigit() else -1, key[2]

    print(f"{'kernel':40} {'levels':>6} {'dtype':5} {'regs':>5} {'spill B':>8} {'smem B':>8}")
    for key in sorted(cells, key=order):
        regs, spill, smem = cells[key]
        print(f"{key[0]:40} {key[1]:>6} {key[2]:5} {regs:>5} {spill:>8} {smem:>8}")


def compile_all(specs_path: Path, arch: int, spill_limit: int, smem_limit: int,
                timeout: float, jobs: int) -> int:
    """Compile every recorded launch, ``jobs`` compiler processes at a time."""
    import multiprocessing as mp

    import triton

    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    specs = json.loads(specs_path.read_text())
    ctx = mp.get_context("fork")
    print(f"[triton check] {len(specs)} distinct launches, target sm_{arch}, {jobs} jobs",
          flush=True)
    pending, running, failures, done = list(specs), [], 0, []
    while pending or running:
        while pending and len(running) < jobs:
            spec = pending.pop(0)
            queue = ctx.Queue()
            compile_spec = {k: v for k, v in spec.items() if k != "levels"}
            proc = ctx.Process(target=_compile_one, args=(compile_spec, arch, ptxas, queue))
            proc.start()
            running.append((proc, queue, spec, time.time()))
        time.sleep(0.05)
        for item in list(running):
            proc, queue, spec, t0 = item
            if proc.is_alive() and time.time() - t0 < timeout:
                continue
            running.remove(item)
            label = _label(spec)
            if proc.is_alive():
                proc.kill()
                proc.join()
                failures += 1
                print(f"TIMEOUT {label}: no binary after {timeout:.0f} s", flush=True)
                continue
            proc.join()
            res = queue.get() if not queue.empty() else {"ok": False, "error": "compiler died"}
            if not res["ok"]:
                failures += 1
                print(f"FAIL {label}: {res['error']}", flush=True)
                continue
            problems = _problems(spec, res, spill_limit, smem_limit)
            failures += bool(problems)
            done.append((spec, res))
            approx = ", ".join(f"{k} x{v}" for k, v in sorted(res["approx"].items()))
            print(f"{'FAIL' if problems else 'ok  '} {label} (levels "
                  f"{','.join(spec.get('levels') or ['-'])}): {time.time() - t0:.1f} s, "
                  f"regs {res.get('registers')}, spill {res.get('spill_store_bytes')}/"
                  f"{res.get('spill_load_bytes')} B, shared {res['shared']} B"
                  f"{', approx ' + approx if approx else ''}"
                  f"{'  <- ' + '; '.join(problems) if problems else ''}", flush=True)
    _table(done)
    print(f"[triton check] {len(specs) - failures} of {len(specs)} compiled within limits "
          f"(spill <= {spill_limit} B, shared <= {smem_limit} B, no approximate float32 "
          f"division or sqrt in {', '.join(EXACT_MODULES)})")
    return 1 if failures else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 90 or 80")
    p.add_argument("--spill-limit", type=int, default=SPILL_LIMIT,
                   help="fail when a kernel spills more bytes than this (default %(default)s)")
    p.add_argument("--smem-limit", type=int, default=SMEM_LIMIT,
                   help="fail when a kernel asks for more shared memory than this, in bytes "
                        "(default %(default)s: sm_90's most per block)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per kernel")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="kernels compiled at a time")
    p.add_argument("--levels", type=int, nargs="+", default=LEVELS,
                   help="level counts of the texture ops (default: %(default)s)")
    p.add_argument("--texture-only", action="store_true",
                   help="leave out the contourlet kernels")
    p.add_argument("--step", choices=("record", "compile"), help=argparse.SUPPRESS)
    p.add_argument("--specs", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    try:
        import triton  # noqa: F401
    except ImportError:
        print("[triton check] triton not installed: skipped")
        return 0
    if args.step == "record":
        return record(args.specs, tuple(args.levels), not args.texture_only)
    if args.step == "compile":
        return compile_all(args.specs, args.arch, args.spill_limit, args.smem_limit,
                           args.timeout, args.jobs)
    with tempfile.TemporaryDirectory() as tmp:
        specs = Path(tmp) / "launches.json"
        env = {**os.environ, "TRITON_INTERPRET": "1", "SSTKD_BACKEND": ""}
        cmd = [sys.executable, __file__, "--step", "record", "--specs", str(specs),
               "--levels", *map(str, args.levels), *(["--texture-only"] * args.texture_only)]
        t0 = time.time()
        if subprocess.run(cmd, env=env).returncode:
            return 1
        print(f"[triton check] record: {time.time() - t0:.0f} s", flush=True)
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env["TRITON_CACHE_DIR"] = str(Path(tmp) / "cache")  # compile from scratch every time
        cmd = [sys.executable, __file__, "--step", "compile", "--specs", str(specs),
               "--arch", str(args.arch), "--spill-limit", str(args.spill_limit),
               "--smem-limit", str(args.smem_limit),
               "--timeout", str(args.timeout), "--jobs", str(args.jobs)]
        t1 = time.time()
        rc = subprocess.run(cmd, env=env).returncode
        print(f"[triton check] compile: {time.time() - t1:.0f} s, total {time.time() - t0:.0f} s")
        return rc


if __name__ == "__main__":
    sys.exit(main())

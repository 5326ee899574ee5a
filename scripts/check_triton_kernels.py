"""Compile every Triton kernel of sstkd_ops for a real GPU target, without a GPU.

The CPU test run executes the Triton kernels only through the interpreter, which accepts code
the GPU compiler may reject (types, shapes of ``tl.dot``, register budgets). This script closes
that gap in two steps, each in its own process:

1. ``record``: runs every public op with ``backend='triton'`` under ``TRITON_INTERPRET=1`` on
   small inputs (float32 and float64, forward and backward, few and many levels) and records
   each kernel launch: kernel, argument types and ``tl.constexpr`` values.
2. ``compile``: compiles each distinct launch with Triton's own compiler for ``--arch``
   (default sm_90, H100/H200) down to a cubin (Triton ships LLVM and ptxas), and reports the
   registers, spills and shared memory ptxas assigns.

Usage: ``python scripts/check_triton_kernels.py [--arch 90] [--spill-limit BYTES]``.
Exit status 1 when a kernel fails to compile, takes longer than ``--timeout`` seconds, or
spills more than ``--spill-limit`` bytes.
Skips (exit 0) when Triton is not installed.
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


def _exercise() -> None:
    """Run every op on the Triton backend (forward and backward) on small inputs."""
    import torch

    import sstkd_ops

    for dtype in (torch.float32, torch.float64):
        for levels in (8, 128):
            x = torch.randn(2, 3, 12, 10, dtype=dtype, requires_grad=True)
            te = sstkd_ops.texture_equalize(x, levels, 2, 0.5, ((1, 1), (0, -1)),
                                            backend="triton")
            q1 = sstkd_ops.qco_1d(x, levels, backend="triton")
            f = torch.randn(2, 40, levels, dtype=dtype, requires_grad=True)
            tem = sstkd_ops.qco_1d_tem(f, q1.cos_sim, q1.levels, backend="triton")
            loss = te.q.sum() + te.cooc.sum() + te.hist.sum() + q1.sta.sum() + tem.sum()
            if levels <= 12:
                _, sta2 = sstkd_ops.qco_2d(x, 2, 2, backend="triton")
                loss = loss + sta2.sum()
            loss.backward()
        big = torch.randn(1, 2, 128, 128, dtype=dtype, requires_grad=True)
        _, sta2 = sstkd_ops.qco_2d(big, 128, 1, backend="triton")  # 128 levels: 128 lanes
        sta2.sum().backward()
        x = torch.randn(1, 2, 32, 32, dtype=dtype, requires_grad=True)
        low, bands = sstkd_ops.pdfb_dec(x, "9-7", "pkva", (2, 3), backend="triton")
        rec = sstkd_ops.pdfb_rec(low, bands, "9-7", "pkva", backend="triton")
        (rec.sum() + low.sum() + sum(b.sum() for lev in bands for b in lev)).backward()


def record(out: Path) -> int:
    from triton.runtime.interpreter import InterpretedFunction

    launches: dict[str, dict] = {}
    original = InterpretedFunction.run

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
        launches.setdefault(json.dumps(spec, sort_keys=True), spec)
        return original(self, *args, grid=grid, warmup=warmup, **kwargs)

    InterpretedFunction.run = run
    try:
        _exercise()
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
        stats = _ptxas_stats(ptxas, compiled.asm["ptx"], arch) if ptxas.is_file() else {}
        queue.put({"ok": True, "shared": compiled.metadata.shared, **stats})
    except Exception as exc:  # reported by the parent
        queue.put({"ok": False, "error": f"{type(exc).__name__}: "
                                         f"{str(exc).splitlines()[0][:300] if str(exc) else ''}"})


def _label(spec: dict) -> str:
    first_ptr = next(t for t in spec["signature"].values() if t.startswith("*"))
    consts = ",".join(f"{k}={v}" for k, v in {**spec["constexprs"], **spec["options"]}.items())
    return f"{spec['module'].rsplit('.', 1)[-1]}.{spec['kernel']} {consts} [{first_ptr[1:]}]"


def compile_all(specs_path: Path, arch: int, spill_limit: int, timeout: float,
                jobs: int) -> int:
    """Compile every recorded launch, ``jobs`` compiler processes at a time."""
    import multiprocessing as mp

    import triton

    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    specs = json.loads(specs_path.read_text())
    ctx = mp.get_context("fork")
    print(f"[triton check] {len(specs)} distinct launches, target sm_{arch}, {jobs} jobs",
          flush=True)
    pending, running, failures = list(specs), [], 0
    while pending or running:
        while pending and len(running) < jobs:
            spec = pending.pop(0)
            queue = ctx.Queue()
            proc = ctx.Process(target=_compile_one, args=(spec, arch, ptxas, queue))
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
            spilled = max(res.get("spill_store_bytes") or 0, res.get("spill_load_bytes") or 0)
            status = "ok  "
            if spilled > spill_limit:
                failures += 1
                status = "SPILL"
            print(f"{status} {label}: {time.time() - t0:.1f} s, regs {res.get('registers')}, "
                  f"spill {res.get('spill_store_bytes')}/{res.get('spill_load_bytes')} B, "
                  f"shared {res['shared']} B", flush=True)
    print(f"[triton check] {len(specs) - failures} of {len(specs)} compiled within limits")
    return 1 if failures else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 90 or 80")
    p.add_argument("--spill-limit", type=int, default=1 << 30,
                   help="fail when a kernel spills more bytes than this (default: report only)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per kernel")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="kernels compiled at a time")
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
        return record(args.specs)
    if args.step == "compile":
        return compile_all(args.specs, args.arch, args.spill_limit, args.timeout, args.jobs)
    with tempfile.TemporaryDirectory() as tmp:
        specs = Path(tmp) / "launches.json"
        env = {**os.environ, "TRITON_INTERPRET": "1", "SSTKD_BACKEND": ""}
        cmd = [sys.executable, __file__, "--step", "record", "--specs", str(specs)]
        if subprocess.run(cmd, env=env).returncode:
            return 1
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env["TRITON_CACHE_DIR"] = str(Path(tmp) / "cache")  # compile from scratch every time
        cmd = [sys.executable, __file__, "--step", "compile", "--specs", str(specs),
               "--arch", str(args.arch), "--spill-limit", str(args.spill_limit),
               "--timeout", str(args.timeout), "--jobs", str(args.jobs)]
        return subprocess.run(cmd, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())

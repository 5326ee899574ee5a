"""Phase 1: build the compiled extension with its CUDA kernels and record what was built.

On the GPU machine: ``SSTKD_FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=<cores> pip install
--no-build-isolation --no-deps -e .`` (no downloads), then ``python -m sstkd_ops`` and
``sstkd_ops/_build.json``. The dry run builds nothing: it reports the existing build.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.gpu_phases.common import (  # noqa: E402
    REPO,
    parse_args,
    python,
    run,
    tail,
    write_result,
)

PROBE = ("import json, torch; from sstkd_ops._backend import build_info, available_backends; "
         "i = build_info(); i['backends'] = {d: available_backends(d) for d in "
         "(['cpu', 'cuda'] if torch.cuda.is_available() else ['cpu'])}; "
         "print(json.dumps(i, default=str))")


def main() -> None:
    args = parse_args(__doc__)
    log = args.out / "build.log"
    notes, figures = [], {}
    if args.dry_run:
        notes.append("dry run: no build; the existing build is reported")
    else:
        jobs = str(os.cpu_count() or 4)
        r = run([python(), "-m", "pip", "install", "--no-build-isolation", "--no-deps",
                 "--no-index", "-e", "."], log, args.budget - 30, SSTKD_FORCE_CUDA="1",
                TORCH_CUDA_ARCH_LIST=os.environ.get("TORCH_CUDA_ARCH_LIST", "9.0"),
                MAX_JOBS=jobs)
        if r["rc"] != 0 and r["seconds"] < 30:  # pip itself failed, not the compiler
            notes.append("pip install failed at once; building in place instead\n" + r["tail"])
            r = run([python(), "setup.py", "build_ext", "--inplace"], log,
                    args.budget - 30 - r["seconds"], SSTKD_FORCE_CUDA="1",
                    TORCH_CUDA_ARCH_LIST=os.environ.get("TORCH_CUDA_ARCH_LIST", "9.0"),
                    MAX_JOBS=jobs)
        figures["build_s"] = r["seconds"]
        if r["rc"] != 0:
            notes.append("build failed (log tail below)\n" + r["tail"])
    run([python(), "-m", "sstkd_ops"], args.out / "sstkd_ops_info.txt", 60)
    probe = run([python(), "-c", PROBE], args.out / "probe.log", 60)
    line = [ln for ln in probe["tail"].splitlines() if ln.startswith("{")]
    info = json.loads(line[-1]) if line else {}
    figures["extension"] = info.get("extension")
    figures["extension_with_cuda"] = info.get("extension_with_cuda")
    figures["backends"] = info.get("backends")
    try:
        figures["_build.json"] = json.loads((REPO / "sstkd_ops" / "_build.json").read_text())
    except (OSError, ValueError):
        figures["_build.json"] = None
    ok = bool(info.get("extension")) and (bool(info.get("extension_with_cuda")) or args.dry_run)
    if not ok:
        notes.append("what this installation can run:\n" + tail(args.out / "sstkd_ops_info.txt")
                     + "\n" + probe["tail"])
    write_result(args.out, "pass" if ok else "fail", figures, notes)


if __name__ == "__main__":
    main()

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

from scripts.gpu_phases.common import REPO, parse_args, python, run, write_result  # noqa: E402


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
        figures["build_s"] = r["seconds"]
        if r["rc"] != 0:
            notes.append("build failed (log tail below)\n" + r["tail"])
    info = run([python(), "-m", "sstkd_ops"], args.out / "sstkd_ops_info.txt", 60)
    try:
        build = json.loads((REPO / "sstkd_ops" / "_build.json").read_text())
    except (OSError, ValueError):
        build = None
    figures["_build.json"] = build
    text = info["tail"]
    figures["backends"] = [ln.split(":", 1)[1].strip() for ln in text.splitlines()
                           if ln.startswith("backends for")]
    with_cuda = '"extension_with_cuda": true' in text
    figures["extension_with_cuda"] = with_cuda
    ok = info["rc"] == 0 and '"extension": true' in text and (with_cuda or args.dry_run)
    if not ok:
        notes.append("python -m sstkd_ops:\n" + text)
    write_result(args.out, "pass" if ok else "fail", figures, notes)


if __name__ == "__main__":
    main()

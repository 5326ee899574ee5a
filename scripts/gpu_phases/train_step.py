"""Phase 4: one training step, PSPNet-ResNet101 teacher -> PSPNet-ResNet18 student, 512x512,
batch 8, bf16 autocast: ``kd`` vs ``sstkd`` with the fused texture ops (``auto``, and Triton
forced) vs the reference ops; step time, overhead over ``kd``, peak GPU memory
(``python -m benchmarks.bench_train_step``; rows in this phase's ``train_step.csv``).
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.gpu_phases.common import parse_args, python, run, write_result  # noqa: E402


def main() -> None:
    args = parse_args(__doc__)
    csv_path = args.out / "train_step.csv"
    cmd = [python(), "-m", "benchmarks.bench_train_step", "--presets", "kd,sstkd", "--no-plot",
           "--csv", str(csv_path)]
    if args.dry_run:
        cmd += ["--device", "cpu", "--reps", "1", "--set", "data.crop_size=[32,32]",
                "--set", "data.batch_size=2", "--texture-backends", "auto"]
    else:
        cmd += ["--device", "cuda", "--reps", "10", "--autocast", "bf16",
                "--config", "cityscapes_pspnet_r101_r18",
                "--set", "data.crop_size=[512,512]", "--set", "data.batch_size=8",
                "--texture-backends", "reference,auto,triton"]
    t0 = time.time()
    r = run(cmd, args.out / "train_step.log", args.budget - 5)
    rows = []
    if csv_path.exists():
        with csv_path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    figures = {f"{r_['preset']} {r_['texture_ops']}": {
        "ms": float(r_["median_ms"]), "over_kd_pct": r_.get("overhead_vs_kd_pct"),
        "peak_mb": r_.get("peak_mb") or None} for r_ in rows}
    notes = [] if r["rc"] == 0 and rows else [f"exit {r['rc']}" + (" (timed out)" if
                                                                    r["timed_out"] else "")
                                              + "\n" + r["tail"]]
    if args.dry_run:
        notes.append("dry run: synthetic config, 32x32, batch 2, no autocast, CPU")
    elif rows:
        from benchmarks.harness import RESULTS, append_csv  # imports torch: GPU run only

        append_csv(RESULTS / "train_step.csv", rows)
    skipped = [ln for ln in (args.out / "train_step.log").read_text().splitlines()
               if ln.startswith("[skip]")]
    figures["seconds"] = round(time.time() - t0, 1)
    write_result(args.out, "pass" if r["rc"] == 0 and rows and not skipped else "fail", figures,
                 notes + skipped)


if __name__ == "__main__":
    main()

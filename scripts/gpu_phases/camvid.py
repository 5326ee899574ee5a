"""Phase 5: CamVid at full resolution with the project's CLI: teacher, then ``baseline``,
``kd`` and ``sstkd`` students (``scripts/run_experiments.py`` over ``python -m sstkd.train``,
config ``camvid_gpu``), mIoU on val, from the pack of ``scripts/pack_camvid.py`` (JPEG
re-encoded images). Writes ``camvid_results.json``.

The dry run packs a few images into this phase's folder and trains a few steps of small
networks on 60x80 images; it checks the plumbing, not the figures.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.gpu_phases.common import REPO, parse_args, python, run, write_json, write_result  # noqa: E402,E501

VARIANTS = ("baseline", "kd", "sstkd")
DRY_VARIANTS = ("sstkd",)  # the dry run: teacher + the most involved student
DRY_SETS = ["data.resize=[60,80]", "data.crop_size=[48,64]", "data.batch_size=2",
            "data.workers=0", "model.teacher=pspnet_resnet18", "train.iters=2",
            "train.teacher_iters=2", "train.eval_every=2", "train.ckpt_every=2",
            "train.log_every=1", "train.amp=false", "distill.texture.nlevs=[2,2]",
            "optim.warmup_iters=0"]


def main() -> None:
    args = parse_args(__doc__)
    deadline = time.time() + args.budget - 5
    notes: list[str] = []
    missing = [m for m in ("PIL", "matplotlib") if importlib.util.find_spec(m) is None]
    if missing:  # the loader reads images with PIL; the trainer plots curves with matplotlib
        notes.append(f"not importable here: {', '.join(missing)}")
    if args.dry_run:
        pack = args.out / "pack"
        r = run([python(), "scripts/pack_camvid.py", "--dst", str(pack), "--limit", "2"],
                args.out / "pack.log", 120)
        sets = [f"data.root={pack}", *DRY_SETS]
        notes.append("dry run: 2 images per split, 60x80, 2 steps, ResNet18 teacher, CPU")
    else:
        pack = REPO / ".gpu_pack" / "camvid"
        r = {"rc": 0 if (pack / "PACK.json").is_file() else 1,
             "tail": f"no pack at {pack}: run scripts/pack_camvid.py and carry .gpu_pack"}
        sets = [f"data.root={pack}"]
    if r["rc"] != 0 or "PIL" in missing:
        write_result(args.out, "fail", {}, notes + [r["tail"]])
        return
    from scripts.pack_camvid import check

    pack_info = json.loads((pack / "PACK.json").read_text())
    pack_info["check"] = check(pack)
    runs_dir = args.out / "runs"
    variants = DRY_VARIANTS if args.dry_run else VARIANTS
    cmd = [python(), "scripts/run_experiments.py", "run", "--config", "camvid_gpu", "--seeds",
           "0", "--variants", *variants, "--out", str(runs_dir), "--threads",
           "1" if args.dry_run else "4"] + [a for s in sets for a in ("--set", s)]
    r = run(cmd, args.out / "camvid.log", deadline - time.time())
    runs = {}
    for res in sorted(runs_dir.glob("seed0/*/results.json")):
        rr = json.loads(res.read_text())["runs"][0]
        runs[res.parent.name] = {"miou": rr.get("miou"), "preset": rr.get("preset"),
                                 "model": rr.get("model"), "steps": rr.get("steps"),
                                 "wall_time_s": rr.get("wall_time_s")}
    result = {"dataset": "CamVid train (367) -> val (101), 11 classes, 360x480",
              "images": pack_info["images"], "pack": pack_info, "config": "camvid_gpu",
              "overrides": sets, "runs": runs, "dry_run": args.dry_run}
    write_json(args.out / "camvid_results.json", result)
    done = all(v in runs for v in ("teacher", *variants))
    if r["rc"] != 0 or not done:
        notes.append(f"run_experiments exit {r['rc']}"
                     f"{' (timed out)' if r.get('timed_out') else ''}; finished: "
                     f"{', '.join(runs) or 'none'}\n" + r["tail"])
    figures = {k: (None if v["miou"] is None else round(100 * v["miou"], 2))
               for k, v in runs.items()}
    figures["images"] = pack_info["images"]
    write_result(args.out, "pass" if done and r["rc"] == 0 else "fail", figures, notes)


if __name__ == "__main__":
    main()

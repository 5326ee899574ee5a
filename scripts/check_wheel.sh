#!/usr/bin/env bash
# What a user installs is the wheel: build it, install it into a fresh virtualenv that reuses the
# torch already installed (never replaced: --no-deps), and from a folder outside the repository
# run the CLI (--help, the default config by name, a 2-step training run) and the compiled
# extension. Prints the wall time of each stage.
#
# Usage: scripts/check_wheel.sh [WHEEL]
#   WHEEL  check this wheel instead of building one (e.g. one built earlier in the same CI job)
# The build runs in the repository (pip's in-tree build), so build/ keeps the object files: with
# csrc/ unchanged since the last build, the extension is relinked in seconds, not recompiled.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sstkd_wheel.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
say() { echo "check_wheel: $*"; }
t0=$SECONDS

if [[ $# -ge 1 ]]; then
  wheel=$(realpath "$1")
else
  (cd "$repo" && python -m pip wheel --no-build-isolation --no-deps -q -w "$tmp/dist" .)
  wheel=$(ls "$tmp"/dist/sstkd-*.whl)
fi
say "wheel $(basename "$wheel") ready after $((SECONDS - t0)) s"
python - "$wheel" <<'EOF'
import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
for need in ("sstkd/configs/synthetic_default.yaml", "sstkd/configs/camvid_cpu.yaml",
             "sstkd_ops/_build.json", "sstkd_ops/contourlet/reference/dfb.py",
             "sstkd_ops/texture/triton/qco.py", "sstkd_ops/linprog/triton_kernel.py"):
    if need not in names:
        sys.exit(f"check_wheel: the wheel lacks {need}")
if not any(n.startswith("sstkd_ops/_C.") for n in names):
    sys.exit("check_wheel: the wheel lacks the compiled extension sstkd_ops/_C")
EOF

t1=$SECONDS
python -m venv --system-site-packages --without-pip "$tmp/venv"  # this pip installs into it
py="$tmp/venv/bin/python"
torch_before=$("$py" -c "import torch; print(torch.__version__, torch.__file__)")
# --ignore-installed: a development install of sstkd outside the venv must not count as installed
python -m pip --python "$py" install -q --no-deps --ignore-installed \
  --disable-pip-version-check "$wheel"
torch_after=$("$py" -c "import torch; print(torch.__version__, torch.__file__)")
[[ "$torch_before" == "$torch_after" ]] || { say "torch changed: $torch_before -> $torch_after"; exit 1; }
say "installed into a fresh virtualenv in $((SECONDS - t1)) s (torch ${torch_after%% *} reused)"

mkdir "$tmp/elsewhere"
cd "$tmp/elsewhere"  # nothing of the repository is importable from here
t2=$SECONDS
"$py" - "$tmp/venv" <<'EOF'
import sys
from pathlib import Path

import torch

import sstkd
import sstkd_ops
from sstkd.config import load_config

venv = Path(sys.argv[1]).resolve()
for mod in (sstkd, sstkd_ops):
    if venv not in Path(mod.__file__).resolve().parents:
        sys.exit(f"check_wheel: {mod.__name__} imported from {mod.__file__}, not the wheel")
info = sstkd_ops.build_info()
if "cpu" not in sstkd_ops.available_backends("cpu"):
    sys.exit(f"check_wheel: the compiled extension does not load: {info}")
x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
low, bands = sstkd_ops.pdfb_dec(x, "9-7", "pkva", [2], backend="cpu")
ref_low, _ = sstkd_ops.pdfb_dec(x, "9-7", "pkva", [2], backend="reference")
torch.testing.assert_close(low, ref_low)
stats = sstkd_ops.texture_equalize(torch.randn(2, 3, 8, 8), 8, backend="cpu")
assert torch.isfinite(stats.q).all()
cfg = load_config("camvid_cpu", ["data.root=/data"])
print(f"check_wheel: extension loads and matches the reference (backends "
      f"{sstkd_ops.available_backends('cpu')}); packaged configs load by name "
      f"(camvid_cpu: {cfg.data.dataset}, {cfg.data.num_classes} classes)")
EOF

"$py" -m sstkd.train --help > help.txt
grep -q "synthetic_default.yaml" help.txt || { say "--help does not name the default config"; exit 1; }
# the packaged default config, shrunk to seconds: 32x32 mosaics, batch 2, 2 steps, no teacher
"$py" -m sstkd.train --config synthetic_default --preset baseline --threads 1 --no-progress \
  --output-dir run --set train.iters=2 --set optim.warmup_iters=0 --set train.eval_every=0 \
  --set train.ckpt_every=0 --set train.amp=false --set train.tensorboard=false \
  --set data.image_size=32 --set data.crop_size=32,32 --set data.batch_size=2 \
  --set data.train_length=4 --set data.val_length=2 --set model.aux=false > train.log 2>&1 \
  || { cat train.log; say "the 2-step training run failed"; exit 1; }
[[ -f run/results.json && -f run/final_model.pth ]] || { cat train.log; say "no results"; exit 1; }
say "CLI --help and a 2-step training run from $(pwd) in $((SECONDS - t2)) s"
say "passed in $((SECONDS - t0)) s"

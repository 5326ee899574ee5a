#!/usr/bin/env bash
# Compile-only check of every CUDA source under csrc/ (no GPU needed): nvcc -c against the
# ATen/c10 headers that ship with the installed torch wheel. Skips with a message when nvcc
# is missing. A CPU wheel lacks c10/cuda's generated config header (and the CUDA math-library
# headers behind ATen/cuda/CUDAContext.h): sources include only ATen, c10 and c10/cuda, and
# C10_CUDA_NO_CMAKE_CONFIGURE_FILE skips the generated header, which holds nothing a kernel
# translation unit needs on Linux.
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC=${NVCC:-$(command -v nvcc || true)}
if [ -z "$NVCC" ]; then
  echo "[nvcc check] nvcc not found: skipped"
  exit 0
fi
shopt -s nullglob
files=(csrc/*/cuda/*.cu)
if [ ${#files[@]} -eq 0 ]; then
  echo "[nvcc check] no .cu files"
  exit 0
fi
TORCH_DIR=$(python -c "import os, torch; print(os.path.dirname(torch.__file__))")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for f in "${files[@]}"; do
  start=$(date +%s)
  "$NVCC" -std=c++20 -O1 -c "$f" -o "$out/$(basename "$f").o" \
    -I"$TORCH_DIR/include" -I"$TORCH_DIR/include/torch/csrc/api/include" \
    -Icsrc -DSSTKD_WITH_CUDA=1 --expt-relaxed-constexpr \
    -DC10_CUDA_NO_CMAKE_CONFIGURE_FILE \
    -gencode arch=compute_90,code=sm_90
  echo "[nvcc check] $f compiled ($(( $(date +%s) - start )) s)"
done

#!/usr/bin/env bash
# GPU options, on a GPU box (never in the tests): s/epoch of one MNIST and one CIFAR setting
# (full-size splits) under each precision x XLA x batch size, then 4 trainings sharing the GPU
# at once, with an estimate of the whole sweep at params.yaml's epochs.
#   bash bench/gpu.sh [OUTDIR]       (PYTHON=... picks the interpreter)
set -euo pipefail
out=${1:-bench-gpu}
mkdir -p "$out"
# several processes share one GPU: each takes memory as it needs it (TensorFlow / JAX)
export TF_FORCE_GPU_ALLOW_GROWTH=true XLA_PYTHON_CLIENT_PREALLOCATE=false
python=${PYTHON:-python}
"$python" -m bench.options --train-samples 0 --val-samples 0 --epochs 3 \
  --precisions float32 mixed_float16 mixed_bfloat16 --jit-compile ${JIT:-false true} --batch-sizes 128 512 \
  --json "$out/options.json"
"$python" -m bench.options --train-samples 0 --val-samples 0 --epochs 3 \
  --precisions ${SHARED_PRECISION:-mixed_bfloat16} --jit-compile true --batch-sizes 128 --jobs ${JOBS:-4} \
  --json "$out/side-by-side.json"

#!/usr/bin/env bash
# The GPU check of [distill] device / precision, in one command from the repository root on a CUDA host:
#
#   bash benchmarks/gpu_check.sh                 # OUT defaults to ./gpu-check-out
#   OUT=/some/folder bash benchmarks/gpu_check.sh
#   VADER_DIR=path/to/ground_truth bash benchmarks/gpu_check.sh   # a carried copy of the VADER files
#
# Needs torch with CUDA, transformers, accelerate, safetensors, tokenizers, numpy, pytest (no executorch,
# no gguf, no network). Runs, within 8 minutes: the cuda-marked tests (with the 2-process NCCL test when
# there are two GPUs) and benchmarks/train_throughput.py --quick --devices cuda. Every step
# runs even if an earlier one failed; the exit status is non-zero if any failed. Log: $OUT/gpu_check.log.
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: > "$LOG"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export EDGEDISTILL_CACHE="${EDGEDISTILL_CACHE:-$OUT/cache}"
PY="${PYTHON:-python3}"
failed=()

step() {  # step NAME TIMEOUT_S COMMAND...
  local name="$1" limit="$2"
  shift 2
  echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*" | tee -a "$LOG"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$LOG"
  [ "$rc" -eq 0 ] || failed+=("$name(exit $rc)")
}

step host 30 bash -c "nvidia-smi || true; $PY -c 'import sys, torch, transformers, accelerate; \
print(\"python\", sys.version.split()[0], \"torch\", torch.__version__, \"cuda\", torch.version.cuda, \
\"transformers\", transformers.__version__, \"accelerate\", accelerate.__version__); \
print(\"cuda available\", torch.cuda.is_available(), torch.cuda.device_count(), \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"\"); \
print(\"bf16\", torch.cuda.is_available() and torch.cuda.is_bf16_supported()); \
assert torch.cuda.is_available(), \"no CUDA GPU visible to torch\"'"

# includes the 2-process NCCL test when the host has two GPUs (skipped, with the reason, on one)
step cuda-tests 210 "$PY" -m pytest -m cuda tests/unit/test_cuda.py -q -rs -p no:cacheprovider

# the cuda column only (the CPU column is measured on a CPU host and merged with --merge there)
BENCH_ARGS=(--quick --devices cuda --out "$OUT/train_throughput")
if [ -n "${VADER_DIR:-}" ]; then BENCH_ARGS+=(--data-dir "$VADER_DIR"); fi
step train-throughput 240 "$PY" benchmarks/train_throughput.py "${BENCH_ARGS[@]}"

if [ ${#failed[@]} -eq 0 ]; then
  echo "GPU CHECK PASSED; results in $OUT" | tee -a "$LOG"
  exit 0
fi
echo "GPU CHECK FAILED: ${failed[*]}; see $LOG" | tee -a "$LOG"
exit 1

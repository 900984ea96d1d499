#!/usr/bin/env bash
# The GPU session's checks of issue #8, in one call, most important first, within a time budget:
#
#   OUT=/tmp/gpu_check bash benchmarks/gpu_check.sh          # on the GPU machine (repo root)
#   GPU_CHECK_TINY=1 OUT=/tmp/gc bash benchmarks/gpu_check.sh  # smoke test of this script on CPU
#
#   1. attention: does cuDNN flash attention (model.attention_impl="auto"/"cudnn") accept
#      base128's attention shapes, how fast is it vs XLA, and how close (max |diff|)? Where cuDNN
#      refuses no shape, the items below run with model.attention_impl=auto, else =xla;
#   2. train_step base128 bf16 at batch 16 and 32 (target: >= 40% MFU on one H100);
#   3. sampling: the paper cascade (DDPM 256 / DDPM 128 / DDIM 32, 128 -> 256 -> 1024) in bf16 at
#      batch 1 (target: < 20 s per try-on on one H100);
#   4. if time is left: train_step base128 bf16 + remat at batch 64; the paper cascade at batch 4.
#
# Every item runs under `timeout` cut to what is left of GPU_CHECK_BUDGET_S (default 540 s, for a
# 600 s call limit), so a slow compile costs that item, not the whole call. Everything lands in
# $OUT: RESULTS.md (a copy of benchmarks/RESULTS.md with the new rows appended: merge those rows
# into the committed file), <item>.jsonl (JSON results), <item>.log (stderr) and summary.txt.
set -u
OUT="${OUT:-/tmp/gpu_check}"
BUDGET="${GPU_CHECK_BUDGET_S:-540}"
mkdir -p "$OUT"
cp benchmarks/RESULTS.md "$OUT/RESULTS.md"
START=$(date +%s)
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

if [ "${GPU_CHECK_TINY:-0}" = "1" ]; then  # same items, CPU-sized
  BASE=(--config=configs/demo.py --set model.channels=\(8,16\) --set model.person_blocks=\(1,1\)
        --set model.garment_blocks=\(1,1\) --set model.attention=\(False,True\)
        --set model.resolution=16 --set model.head_dim=8 --set model.garment_decoder_levels=1)
  SAMPLING=(--cascade=tiny --samplers=ddim --steps=2 --iters=1)
  BATCHES=2,4; BIG_BATCH=4; SAMPLE_BIG_BATCH=2; ATTN_BATCH=2
else
  BASE=(--config=configs/base128.py)
  SAMPLING=(--cascade=paper --samplers=paper --steps=paper --iters=2)
  BATCHES=16,32; BIG_BATCH=64; SAMPLE_BIG_BATCH=4; ATTN_BATCH=8
fi

export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}"  # largest batch

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# run NAME MIN_SECONDS MAX_SECONDS -- command...: skipped when under MIN_SECONDS are left.
run() {
  local name=$1 min=$2 max=$3; shift 4
  local remaining; remaining=$(left)
  if [ "$remaining" -lt "$min" ]; then
    echo "$name: SKIPPED (${remaining}s left, needs ${min}s)" | tee -a "$SUMMARY"
    return
  fi
  local limit=$(( remaining < max ? remaining : max ))
  local t0; t0=$(date +%s)
  timeout --signal=TERM --kill-after=10 "$limit" "$@" --results="$OUT/RESULTS.md" \
      > "$OUT/$name.jsonl" 2> "$OUT/$name.log"
  local rc=$?
  echo "$name: rc=$rc in $(( $(date +%s) - t0 ))s (limit ${limit}s), $(wc -l < "$OUT/$name.jsonl") results" \
      | tee -a "$SUMMARY"
  [ "$rc" -eq 0 ] || tail -n 5 "$OUT/$name.log" | sed "s/^/  $name| /" | tee -a "$SUMMARY"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    || echo "no nvidia-smi"
  python -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
} 2>&1 | tee -a "$SUMMARY"

run attention 30 90 -- python -m benchmarks.attention "${BASE[@]}" --dtype=bfloat16 \
    --batch="$ATTN_BATCH"
IMPL_NAME=auto  # cuDNN flash attention in bf16 on GPU, unless cuDNN refused a shape
if ! grep -q '"cudnn_ms"' "$OUT/attention.jsonl" 2>/dev/null \
    || grep -q '"cudnn_error"' "$OUT/attention.jsonl"; then
  IMPL_NAME=xla
fi
IMPL=(--set model.attention_impl=$IMPL_NAME)
SAMPLING_IMPL=(--set base128.model.attention_impl=$IMPL_NAME --set sr256.model.attention_impl=$IMPL_NAME)
echo "attention_impl for the items below: $IMPL_NAME" | tee -a "$SUMMARY"

run train_step_bf16 120 240 -- python -m benchmarks.train_step "${BASE[@]}" "${IMPL[@]}" \
    --set model.dtype=bfloat16 --batch="$BATCHES" --steps=10 --warmup=2
run sampling_paper_b1 90 240 -- python -m benchmarks.sampling "${SAMPLING[@]}" "${SAMPLING_IMPL[@]}" \
    --dtype=bfloat16 --batch=1
run train_step_bf16_remat 120 240 -- python -m benchmarks.train_step "${BASE[@]}" "${IMPL[@]}" \
    --set model.dtype=bfloat16 --set model.remat=True --batch="$BIG_BATCH" --steps=5 --warmup=1
run sampling_paper_b4 90 200 -- python -m benchmarks.sampling "${SAMPLING[@]}" "${SAMPLING_IMPL[@]}" \
    --dtype=bfloat16 --batch="$SAMPLE_BIG_BATCH"

echo "total $(( $(date +%s) - START ))s of ${BUDGET}s" | tee -a "$SUMMARY"

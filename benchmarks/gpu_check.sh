#!/usr/bin/env bash
# The GPU session's checks of issue #8, in one call, most important first, within a time budget:
#
#   OUT=/tmp/gpu_check bash benchmarks/gpu_check.sh          # on the GPU machine (repo root)
#   GPU_CHECK_TINY=1 OUT=/tmp/gc bash benchmarks/gpu_check.sh  # smoke test of this script on CPU
#
#   0. probe: jax sees the accelerator, and a bf16 8192^3 matmul's TFLOP/s (the usable peak); the
#      script stops here if this fails, so a broken machine costs a minute, not the budget;
#   1. attention: does cuDNN flash attention (model.attention_impl="auto"/"cudnn") accept
#      base128's attention shapes, how fast is it vs XLA, and how close (max |diff|)? Where cuDNN
#      refuses no shape, the items below run with model.attention_impl=auto, else =xla (the H100
#      of 2026-11-27 took all four shapes);
#   2. train_step_scan: base128 bf16 with model.scan_blocks=True (each level's same-shaped blocks
#      compiled once: 2.1x faster to compile on this repo's CPU) at batch 32, then at the largest
#      batch that should fit (--batch=32,fit: extrapolated from batch 32's peak memory), the state
#      built on the host (--init=random: the jitted initializer alone compiled for 78 s on an
#      H100): MFU against the >= 40% target. First because it compiles faster;
#   3. train_step: the same, unrolled (the default), at batch 32 (the step compiled for 179 s on
#      an H100): which layout is faster decides model.scan_blocks' default (on CPU the scanned
#      step ran 3.6x slower);
#   4. train_step_xla: batch 32 with XLA attention, to see what cuDNN gives the whole step (only
#      where item 3 ran with "auto");
#   5. sampling: the paper cascade (DDPM 256 / DDPM 128 / DDIM 32, 128 -> 256 -> 1024) in bf16 at
#      batch 4 (14.79 s per batch on an H100 with cuDNN attention, 2026-11-27).
#
# GPU_CHECK_ITEMS (default "attention,train_step_scan,train_step,train_step_xla,sampling") picks
# items, so a second call can run what the first had no time for. Without the attention item, the
# items below it take model.attention_impl from GPU_CHECK_ATTENTION_IMPL (default auto).
#
# Every item runs under `timeout` cut to what is left of GPU_CHECK_BUDGET_S (default 550 s), so a
# slow compile costs that item, not the whole call. $PYTHON picks the interpreter (default python3,
# else python). Four files land in $OUT (the device tool returns at most 8), each written as items
# finish: RESULTS.md (a copy of benchmarks/RESULTS.md with the new rows appended: merge those rows
# into the committed file), results.jsonl (every item's JSON lines), log.txt (every item's stderr
# with jax's compile log, under "=== item ===" headers) and summary.txt.
set -u
OUT="${OUT:-/tmp/gpu_check}"
BUDGET="${GPU_CHECK_BUDGET_S:-550}"
ITEMS=",${GPU_CHECK_ITEMS:-attention,train_step_scan,train_step,train_step_xla,sampling},"
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
mkdir -p "$OUT"
cp benchmarks/RESULTS.md "$OUT/RESULTS.md"
START=$(date +%s)
SUMMARY="$OUT/summary.txt"
JSONL="$OUT/results.jsonl"
LOG="$OUT/log.txt"
: > "$SUMMARY"; : > "$JSONL"; : > "$LOG"
export PYTHONUNBUFFERED=1
export JAX_LOG_COMPILES=1  # where the time goes when an item runs out of it

if [ "${GPU_CHECK_TINY:-0}" = "1" ]; then  # same items, CPU-sized
  BASE=(--config=configs/demo.py --set model.channels=\(8,16\) --set model.person_blocks=\(1,2\)
        --set model.garment_blocks=\(1,2\) --set model.attention=\(False,True\)
        --set model.resolution=16 --set model.head_dim=8 --set model.garment_decoder_levels=1)
  SAMPLING=(--cascade=tiny --samplers=ddim --steps=2 --iters=1)
  TRAIN_BATCHES=2,4; SAMPLE_BIG_BATCH=2; ATTN_BATCH=2; MATMUL=512  # CPU has no memory limit
else
  BASE=(--config=configs/base128.py)
  SAMPLING=(--cascade=paper --samplers=paper --steps=paper --iters=2)
  TRAIN_BATCHES=32,fit; SAMPLE_BIG_BATCH=4; ATTN_BATCH=8; MATMUL=8192
fi

export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}"  # largest batch

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# run NAME MIN_SECONDS MAX_SECONDS -- command...: skipped when under MIN_SECONDS are left.
run() {
  local name=$1 min=$2 max=$3; shift 4
  [[ "$ITEMS" == *",$name,"* ]] || return 0
  local remaining; remaining=$(left)
  if [ "$remaining" -lt "$min" ]; then
    echo "$name: SKIPPED (${remaining}s left, needs ${min}s)" | tee -a "$SUMMARY"
    return
  fi
  local limit=$(( remaining < max ? remaining : max ))
  local t0; t0=$(date +%s)
  local before; before=$(wc -l < "$JSONL")
  echo "=== $name (limit ${limit}s): $*" >> "$LOG"
  timeout --signal=TERM --kill-after=10 "$limit" "$@" --results="$OUT/RESULTS.md" \
      >> "$JSONL" 2>> "$LOG"
  local rc=$?
  echo "$name: rc=$rc in $(( $(date +%s) - t0 ))s (limit ${limit}s)," \
       "$(( $(wc -l < "$JSONL") - before )) results" | tee -a "$SUMMARY"
  [ "$rc" -eq 0 ] || grep -v -e "Finished\|Compiling\|^WARNING" "$LOG" | tail -n 4 \
      | cut -c1-300 | sed "s/^/  $name| /" | tee -a "$SUMMARY"
}

echo "=== probe" >> "$LOG"
{ timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    || echo "no nvidia-smi"
  timeout 90 "$PYTHON" -c "
import time, jax, jax.numpy as jnp, flax
print('python', '$PYTHON', 'jax', jax.__version__, 'flax', flax.__version__, jax.devices())
n = $MATMUL
a = jnp.ones((n, n), jnp.bfloat16); f = jax.jit(jnp.matmul); f(a, a).block_until_ready()
t = time.perf_counter(); [f(a, a) for _ in range(9)][-1].block_until_ready(); f(a, a).block_until_ready()
print('bf16 matmul %d^3: %.1f TFLOP/s' % (n, 2 * n**3 * 10 / (time.perf_counter() - t) / 1e12))
" 2>> "$LOG"
} 2>&1 | tee -a "$SUMMARY"
if ! grep -q "TFLOP/s" "$SUMMARY"; then
  echo "probe failed: stopping (see log.txt)" | tee -a "$SUMMARY"
  exit 1
fi

run attention 20 60 -- "$PYTHON" -m benchmarks.attention "${BASE[@]}" --dtype=bfloat16 \
    --batch="$ATTN_BATCH"
IMPL_NAME="${GPU_CHECK_ATTENTION_IMPL:-auto}"  # cuDNN flash attention in bf16 on GPU
if [[ "$ITEMS" == *",attention,"* ]] && { \
    ! grep '"benchmark": "attention"' "$JSONL" | grep -q '"cudnn_ms"' \
    || grep '"benchmark": "attention"' "$JSONL" | grep -q '"cudnn_error"'; }; then
  IMPL_NAME=xla  # cuDNN refused a shape, or the attention item did not finish
fi
echo "attention_impl for the items below: $IMPL_NAME" | tee -a "$SUMMARY"
TRAIN=(-m benchmarks.train_step "${BASE[@]}" --set model.dtype=bfloat16 --steps=10 --warmup=2
       --init=random)
run train_step_scan 100 300 -- "$PYTHON" "${TRAIN[@]}" --set model.attention_impl=$IMPL_NAME \
    --set model.scan_blocks=True --batch="$TRAIN_BATCHES"
run train_step 150 240 -- "$PYTHON" "${TRAIN[@]}" --set model.attention_impl=$IMPL_NAME \
    --batch="${TRAIN_BATCHES%%,*}"
[ "$IMPL_NAME" = xla ] || run train_step_xla 150 240 -- "$PYTHON" "${TRAIN[@]}" \
    --set model.attention_impl=xla --batch="${TRAIN_BATCHES%%,*}"
run sampling 90 160 -- "$PYTHON" -m benchmarks.sampling "${SAMPLING[@]}" \
    --set base128.model.attention_impl=$IMPL_NAME --set sr256.model.attention_impl=$IMPL_NAME \
    --dtype=bfloat16 --batch="$SAMPLE_BIG_BATCH"

echo "total $(( $(date +%s) - START ))s of ${BUDGET}s" | tee -a "$SUMMARY"

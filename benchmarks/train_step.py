"""Train-step speed: compile time, step time, images/s, FLOPs, MFU and peak memory of one stage.

  python -m benchmarks.train_step --config=configs/demo.py --batch=16 --steps=10
  python -m benchmarks.train_step --config=configs/base128.py --batch=32 \
      --set model.dtype=bfloat16 [--set model.remat=True]

Runs the project's own train step (tryon_jax.train: sharded state init, the pure jitted step with
the state donated) on random batches of the stage's shapes (docs/ARCHITECTURE.md), so it measures
the model + loss + Adam + EMA update, not the input pipeline (benchmarks.data measures that).

  * init_s: building the sharded train state: with --init=model its jitted initializer (compile
    included); with --init=random values drawn on the host and put on the devices (random_state);
  * compile_s: jit lower + XLA compile of the step;
  * step_s: median wall time of one step, blocking on its outputs, after --warmup steps;
  * pipelined_step_s: mean time per step over --steps steps dispatched back to back with one block
    at the end (as the train loop runs: no host sync per step); images_per_s uses this one;
  * flops_per_step: XLA's cost analysis of the compiled step (what the backend executes: includes
    remat recomputation; custom calls such as cuDNN attention may count 0); null on a GPU, and
    with model.scan_blocks (XLA counts a scanned level's loop body once, not once per block);
  * model_flops_per_step: cost analysis of the same step lowered with remat off and attention on
    XLA's own ops, so it counts every matmul/conv once whatever the kernels (the MFU numerator),
    in a CPU-only subprocess (count_model_flops; jax on a GPU counts nothing); null if it fails;
  * mfu = model_flops_per_step / pipelined_step_s / (peak FLOP/s per device x devices), the peak
    from benchmarks.common (datasheet dense bf16; on CPU a float32 matmul measured in this run);
  * donated_bytes: bytes of inputs the compiled step updates in place (XLA's alias analysis):
    about the whole train state when donation works;
  * peak_mem_bytes: the device allocator's peak, or the process's max RSS on CPU (a process-wide
    peak: with --batch=16,32 the second row's peak covers both; list batches in rising order).

--batch=32,fit measures batch 32, then the largest batch that should fit the device (fit_batch:
linear in the batch from the last measured peak, the donated state as the fixed part).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence

import jax
import numpy as np

from benchmarks import common

TABLE = "train_step"
COLUMNS = ("date", "device", "devices", "jax", "flax", "config", "dtype", "remat", "batch",
           "compile_s", "step_s", "pipelined_step_s", "images_per_s", "model_gflops_per_step",
           "achieved_tflops", "peak_tflops", "mfu", "peak_mem_gb", "command")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default="configs/demo.py", help="config file[:variant]")
  p.add_argument("--batch", default="0",
                 help="global batch, or a comma list (one result each; 0 = config.train.batch_size;"
                 " 'fit' = the largest that should fit the device's memory, after a measured one)")
  p.add_argument("--fit_fraction", type=float, default=0.9,
                 help="'fit' plans for this fraction of the device's memory limit (headroom for "
                 "fragmentation and the estimate's error)")
  p.add_argument("--fit_multiple", type=int, default=8,
                 help="'fit' rounds the batch down to a multiple of this (whole tiles per device)")
  p.add_argument("--steps", type=int, default=10, help="timed steps")
  p.add_argument("--warmup", type=int, default=2, help="untimed steps after compilation")
  p.add_argument("--init", choices=("model", "random"), default="model",
                 help="model = the train state's own jitted initializer; random = built on "
                 "the host like it (random_state), skipping the initializer's compile (78 s on "
                 "an H100 for base128)")
  p.add_argument("--count_model_flops", action="store_true",
                 help="only print each batch's model FLOPs per step (count_model_flops runs this "
                 "in a CPU-only subprocess)")
  p.add_argument("--count_timeout_s", type=float, default=300,
                 help="limit on that subprocess (base128 took 54 s on a 2-core VM, jax 0.11.2)")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="config override, e.g. model.dtype=bfloat16 (repeatable)")
  p.add_argument("--results", default=common.DEFAULT_RESULTS,
                 help="markdown file to append the row to ('' = do not write)")
  return p.parse_args(argv)


def random_batch(config, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
  """Host batch with the train pipeline's keys and shapes for ``config.stage``."""
  rng = np.random.default_rng(seed)
  if config.stage == "sr1024":
    size = int(config.data.crop_size)
    return {"person": rng.uniform(-1, 1, (batch_size, size, size, 3)).astype(np.float32)}
  r = int(config.model.resolution)
  k = int(config.model.num_keypoints)
  batch = {name: rng.uniform(-1, 1, (batch_size, r, r, 3)).astype(np.float32)
           for name in ("person", "agnostic", "garment")}
  for who in ("person", "garment"):
    batch[f"{who}_pose"] = rng.uniform(0, 1, (batch_size, k, 2)).astype(np.float32)
    batch[f"{who}_pose_mask"] = np.ones((batch_size, k), np.float32)
  return batch


def random_state(spec) -> object:
  """A train state of ``spec``'s shapes and shardings built on the host, without compiling the
  state's initializer, valued like it: kernels N(0, 1/fan_in) (fan_in = all but the last axis),
  norm scales 1, biases and other vectors 0, the EMA equal to the model, the optimizer's moments
  and counters 0; under a scanned level's "blocks" the leading (stack) axis is not the kernel's.
  The draws come from one host buffer, sliced per leaf.
  """
  paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(spec.abstract)
  largest = max(int(np.prod(leaf.shape)) for _, leaf in paths_leaves)
  normal = np.random.default_rng(0).standard_normal(largest, np.float32)

  def value(path, leaf) -> np.ndarray:
    keys = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
    size = int(np.prod(leaf.shape))
    if keys[0] == "optimizer" or not np.issubdtype(leaf.dtype, np.floating):
      return np.zeros(leaf.shape, leaf.dtype)
    stacked = 1 if "blocks" in keys else 0  # [count, ...] (parallel_unet.ScannedBlocks)
    if len(leaf.shape) >= 2 + stacked:
      fan_in = size // leaf.shape[-1] // (leaf.shape[0] if stacked else 1)
      return (normal[:size].reshape(leaf.shape) / np.sqrt(fan_in)).astype(leaf.dtype)
    fill = 1.0 if "scale" in keys else 0.0
    return np.full(leaf.shape, fill, leaf.dtype)

  return jax.tree.unflatten(treedef, [jax.device_put(value(path, leaf), leaf.sharding)
                                      for path, leaf in paths_leaves])


def count_model_flops(args: argparse.Namespace, batch_size: int) -> float | None:
  """FLOPs of one step at ``batch_size`` with remat off and XLA attention (a cuDNN flash-attention
  custom call would count none, remat would count the recomputation): XLA's cost analysis of the
  step lowered, not compiled, in a CPU-only subprocess (``--count_model_flops``). On a GPU, jax
  0.11.2 counts nothing (Lowered.cost_analysis is unimplemented on the CUDA plugin and the
  compiled step reports no 'flops'); the unoptimised program's count is the same on any backend.
  None, with the reason on stderr, if the count fails: the timings are kept either way."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
  command = [sys.executable, "-m", "benchmarks.train_step", f"--config={args.config}",
             *(f"--set={item}" for item in args.set), f"--batch={batch_size}",
             "--count_model_flops"]
  try:
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False,
                          timeout=args.count_timeout_s)
  except subprocess.TimeoutExpired:
    print(f"model FLOPs at batch {batch_size}: counting took over --count_timeout_s="
          f"{args.count_timeout_s}", file=sys.stderr, flush=True)
    return None
  lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
  if proc.returncode or not lines:
    tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
    print(f"model FLOPs at batch {batch_size}: counting failed (rc {proc.returncode}): {tail}",
          file=sys.stderr, flush=True)
    return None
  return float(json.loads(lines[-1])["model_flops_per_step"])


def print_model_flops(config, batches: Sequence[int]) -> None:
  """``--count_model_flops``: one JSON line per batch, the step of ``config`` with remat off and
  XLA attention lowered on a one-device mesh (the count is global: sharding does not change it),
  and its levels unrolled (model.scan_blocks off: XLA counts a scan's body once, not per step)."""
  from tryon_jax.parallel import sharding  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import state as state_lib  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import step as step_lib  # pylint: disable=g-import-not-at-top
  config.model.remat = False
  if "scan_blocks" in config.model:
    config.model.scan_blocks = False
  if "attention_impl" in config.model:
    config.model.attention_impl = "xla"
  axes = tuple(config.mesh.axes)
  mesh = sharding.make_mesh((1,) * len(axes), axes, devices=jax.devices()[:1])
  spec = state_lib.state_spec(config, mesh)
  step = step_lib.make_train_step(config, spec)
  for batch_size in batches:
    config.train.batch_size = batch_size
    batch = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding.batch_sharding(mesh)),
        random_batch(config, batch_size))
    with jax.set_mesh(mesh):
      flops = common.cost_analysis_flops(step.lower(spec.abstract, batch))
    common.emit({"benchmark": TABLE, "batch": batch_size, "model_flops_per_step": flops})


def run(args: argparse.Namespace) -> list[dict]:
  """One result per --batch entry; the train state is built once and carried between them."""
  from tryon_jax.parallel import sharding  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import state as state_lib  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import step as step_lib  # pylint: disable=g-import-not-at-top

  config = common.load_config(args.config, args.set)
  try:
    batches = [b if b == "fit" else int(b) or int(config.train.batch_size)
               for b in str(args.batch).split(",")]
  except ValueError:
    raise SystemExit(f"--batch={args.batch!r}: expected ints or 'fit', comma separated") from None
  sizes = [b for b in batches if b != "fit"]
  if (args.steps < 1 or args.warmup < 0 or not sizes or min(sizes) < 1 or batches[0] == "fit"
      or not 0 < args.fit_fraction <= 1 or args.fit_multiple < 1):
    raise SystemExit(f"--steps={args.steps} and --batch={args.batch} must be >= 1 ('fit' after a "
                     f"number), --warmup={args.warmup} >= 0, --fit_fraction in (0, 1], "
                     f"--fit_multiple >= 1")
  if args.count_model_flops:
    print_model_flops(config, sizes)
    return []
  mesh = sharding.make_mesh(config.mesh.shape, config.mesh.axes)
  start = time.perf_counter()
  spec = state_lib.state_spec(config, mesh)
  state = state_lib.init_state(config, spec) if args.init == "model" else random_state(spec)
  holder = {"state": jax.block_until_ready(state)}
  init_s = time.perf_counter() - start
  train_step = step_lib.make_train_step(config, spec)
  info = common.device_info()
  peak = None
  results = []
  counter = concurrent.futures.ThreadPoolExecutor(max_workers=1)
  for batch_size in batches:
    if batch_size == "fit":
      batch_size = fit_batch(results[-1], common.device_memory_limit(), args.fit_fraction,
                             args.fit_multiple)
      if batch_size is None:
        continue
    config.train.batch_size = batch_size
    batch = sharding.host_local_to_global(random_batch(config, batch_size),
                                          sharding.batch_sharding(mesh))
    # On an accelerator the FLOP count (a CPU subprocess: 54 s for base128 on this VM) runs while
    # XLA compiles the step, and ends before the timed steps. On a CPU it would slow both.
    counting = (counter.submit(count_model_flops, args, batch_size)
                if jax.default_backend() != "cpu" else None)
    start = time.perf_counter()
    with jax.set_mesh(mesh):
      lowered = train_step.lower(holder["state"], batch)
      compiled = lowered.compile()
    compile_s = time.perf_counter() - start
    mflops = counting.result() if counting else count_model_flops(args, batch_size)
    try:
      flops = (None if config.model.get("scan_blocks") else  # a scan's body is counted once
               common.cost_analysis_flops(compiled))
    except RuntimeError:  # jax 0.11.2 on an H100 counts none for the compiled step; MFU uses
      flops = None        # model_flops_per_step either way
    try:
      memory = compiled.memory_analysis()  # aliased bytes = donated state updated in place
    except (RuntimeError, NotImplementedError):
      memory = None  # unreported, as on backends without it: no reason to lose the timings
    aliased = int(getattr(memory, "alias_size_in_bytes", 0) or 0) if memory is not None else 0

    def one_step(compiled=compiled, batch=batch):
      holder["state"], metrics = compiled(holder["state"], batch)  # state donated: replaced
      jax.block_until_ready((holder["state"], metrics))

    times = common.time_calls(one_step, warmup=args.warmup, iters=args.steps)
    start = time.perf_counter()
    metrics = None
    for _ in range(args.steps):  # the train loop's way: dispatch ahead, block once at the end
      holder["state"], metrics = compiled(holder["state"], batch)
    jax.block_until_ready((holder["state"], metrics))
    pipelined_s = (time.perf_counter() - start) / args.steps
    loss = float(jax.device_get(metrics["loss"]))
    peak_mem, mem_source = common.peak_memory_bytes()
    if peak is None:  # after the step timings: on CPU this runs a matmul benchmark
      peak, peak_source = common.peak_flops_per_device()
    achieved = None if mflops is None else mflops / pipelined_s
    results.append({
        "benchmark": TABLE, **info, "config": args.config, "overrides": list(args.set),
        "dtype": str(config.model.dtype), "remat": bool(config.model.remat), "batch": batch_size,
        "init": args.init, "init_s": init_s, "compile_s": compile_s, "step_s": common.median(times),
        "step_s_min": min(times), "pipelined_step_s": pipelined_s,
        "images_per_s": batch_size / pipelined_s, "flops_per_step": flops,
        "model_flops_per_step": mflops, "achieved_flops": achieved,
        "peak_flops_per_device": peak, "peak_source": peak_source,
        "mfu": None if achieved is None else achieved / (peak * jax.device_count()),
        "peak_mem_bytes": peak_mem,
        "peak_mem_source": mem_source, "donated_bytes": aliased, "loss": loss})
    common.emit(results[-1])  # printed even when the loss is not finite: kept, not trusted
    if not np.isfinite(loss):
      raise SystemExit(f"train step produced a non-finite loss ({loss}) at batch {batch_size}: "
                       "its timing (printed above) is not written to the results table")
    if args.results:
      append(args.results, results[-1])
  counter.shutdown()
  return results


def fit_batch(measured: dict, limit_bytes: int | None, fraction: float,
              multiple: int) -> int | None:
  """The largest multiple of ``multiple`` whose peak memory should stay within ``fraction`` of
  ``limit_bytes``, or None (said on stderr) where it is no larger than ``measured["batch"]``.

  The peak is taken as linear in the batch through the measured one: the donated train state is
  the fixed part, and everything else (gradients, activations, workspace) scales with the batch.
  Counting the gradients as per-example overestimates the slope, so the answer errs small.
  """
  if limit_bytes is None:
    raise SystemExit("--batch=...,fit: this device reports no memory limit (CPU); give a number")
  state, peak, measured_batch = measured["donated_bytes"], measured["peak_mem_bytes"], \
      measured["batch"]
  per_example = (peak - state) / measured_batch
  if per_example <= 0:
    raise SystemExit(f"--batch=...,fit: peak {peak} B at batch {measured_batch} is not above the "
                     f"donated state's {state} B; cannot extrapolate")
  batch = int((fraction * limit_bytes - state) / per_example) // multiple * multiple
  if batch <= measured_batch:
    print(f"fit: batch {measured_batch} already uses {peak / 1e9:.1f} of "
          f"{limit_bytes / 1e9:.1f} GB; no larger multiple of {multiple} fits in "
          f"{fraction:.0%} of it", file=sys.stderr, flush=True)
    return None
  print(f"fit: batch {batch} (state {state / 1e9:.1f} GB + {per_example / 1e9:.2f} GB per "
        f"example, from batch {measured_batch}'s peak {peak / 1e9:.1f} GB; plan "
        f"{fraction:.0%} of {limit_bytes / 1e9:.1f} GB)", file=sys.stderr, flush=True)
  return batch


def append(path: str, result: dict) -> None:
  config = result["config"] + "".join(f" {s}" for s in result["overrides"])
  common.append_row(path, TABLE, COLUMNS, {
      **result, "device": result["device_kind"], "devices": result["num_devices"],
      "config": config, "model_gflops_per_step": _scaled(result["model_flops_per_step"], 1e9),
      "achieved_tflops": _scaled(result["achieved_flops"], 1e12),
      "peak_tflops": result["peak_flops_per_device"] / 1e12,
      "peak_mem_gb": result["peak_mem_bytes"] / 1e9, "command": common.command_line()})


def _scaled(value: float | None, unit: float) -> float | None:
  return None if value is None else value / unit  # None: an empty cell, not counted


def main(argv: Sequence[str] | None = None) -> None:
  run(parse_args(argv))


if __name__ == "__main__":
  main()

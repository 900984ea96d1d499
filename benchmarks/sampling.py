"""Cascade sampling latency: seconds per image and images/s for each sampler, step count and batch.

  python -m benchmarks.sampling                                  # tiny cascade (CPU default)
  python -m benchmarks.sampling --cascade=paper --samplers=paper --steps=paper --batch=1,4 \
      --dtype=bfloat16                                           # paper cascade, paper samplers

Runs tryon_jax.diffusion.cascade (base -> SR 256 -> SR 1024, each stage one jitted program with
the whole sampler loop on device) with randomly initialized networks: the latency does not depend
on the weights. For every (sampler, steps, batch) it reports the compile time (first call minus a
warm call), the median latency of each stage and of the whole cascade over --iters runs, the
latency per image and images/s. Classifier-free guidance (weight != 1) runs both branches in one
doubled batch, as in tryon_jax.diffusion.guidance.

--samplers / --steps take comma lists applied to every stage, or "paper" = each stage's own config
(paper: DDPM 256 / DDPM 128 / DDIM 32). --cascade=tiny is configs/demo.py (32 px) -> a small
SR 256 at 64 px -> a small Efficient-UNet at 256 px (TINY_OVERRIDES), for CPUs; --cascade=paper
is configs/{base128,sr256,sr1024}.py (128 -> 256 -> 1024). --set KEY=VALUE applies to every
stage, --set STAGE.KEY=VALUE (STAGE = base128, sr256, sr1024) to one.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import jax
import numpy as np

from benchmarks import common

TABLE = "sampling"
COLUMNS = ("date", "device", "jax", "flax", "cascade", "dtype", "sampler", "steps", "batch",
           "compile_s", "base_s", "sr256_s", "sr1024_s", "latency_s", "s_per_image",
           "images_per_s", "command")
STAGES = ("base128", "sr256", "sr1024")
PAPER_CONFIGS = {"base128": "configs/base128.py", "sr256": "configs/sr256.py",
                 "sr1024": "configs/sr1024.py"}
TINY_CONFIGS = {"base128": "configs/demo.py", "sr256": "configs/sr256.py",
                "sr1024": "configs/sr1024.py"}
# The tiny cascade: demo-sized networks (configs/demo.py widths) at 32 -> 64 -> 256 px, so that
# the three-stage program structure of the paper cascade compiles and runs on a CPU in seconds.
TINY_OVERRIDES = {
    "base128": [],
    "sr256": ["model.resolution=64", "model.channels=(32,64,96)", "model.person_blocks=(1,2,2)",
              "model.garment_blocks=(1,2,2)", "model.attention=(False,False,True)",
              "model.head_dim=32", "model.pose_embed_dim=64", "model.cond_dim=128",
              "model.pool_heads=4"],
    "sr1024": ["model.channels=(32,64,96)", "model.blocks=(1,2,2)", "model.cond_dim=128"],
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--cascade", choices=("auto", "tiny", "paper"), default="auto",
                 help="auto = tiny on CPU, paper on accelerators")
  p.add_argument("--samplers", default="ddpm,ddim,dpmpp_2m",
                 help="comma list of ddpm, ddim, dpmpp_2m; or 'paper' (each stage's config)")
  p.add_argument("--steps", default="8", help="comma list of step counts; or 'paper'")
  p.add_argument("--batch", default="1,4", help="comma list of batch sizes")
  p.add_argument("--iters", type=int, default=2, help="timed cascade runs per setting")
  p.add_argument("--dtype", default="", help="model.dtype for every stage (default: config's)")
  p.add_argument("--stop_after", default="sr1024", choices=STAGES, help="last stage to run")
  p.add_argument("--set", action="append", default=[], metavar="[STAGE.]KEY=VALUE")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--results", default=common.DEFAULT_RESULTS,
                 help="markdown file to append rows to ('' = do not write)")
  return p.parse_args(argv)


def stage_configs(args: argparse.Namespace) -> tuple[str, dict]:
  """(cascade name, {stage: config}) for the stages up to --stop_after."""
  cascade = args.cascade
  if cascade == "auto":
    cascade = "tiny" if jax.devices()[0].platform == "cpu" else "paper"
  paths = TINY_CONFIGS if cascade == "tiny" else PAPER_CONFIGS
  configs = {}
  for name in STAGES[:STAGES.index(args.stop_after) + 1]:
    overrides = list(TINY_OVERRIDES[name]) if cascade == "tiny" else []
    for item in args.set:
      prefix, dot, rest = item.partition(".")
      if prefix in STAGES:
        if prefix == name:
          overrides.append(rest)
      else:
        overrides.append(item)
    if args.dtype:
      overrides.append(f"model.dtype={args.dtype}")
    configs[name] = common.load_config(paths[name], overrides)
  return cascade, configs


def inference_batch(config, batch_size: int, seed: int) -> dict[str, np.ndarray]:
  """Preprocessed try-on inputs (docs/ARCHITECTURE.md keys minus ``person``) at the base stage's
  resolution; the cascade resizes them for the later stages."""
  rng = np.random.default_rng(seed)
  r, k = int(config.model.resolution), int(config.model.num_keypoints)
  batch = {name: rng.uniform(-1, 1, (batch_size, r, r, 3)).astype(np.float32)
           for name in ("agnostic", "garment")}
  for who in ("person", "garment"):
    batch[f"{who}_pose"] = rng.uniform(0, 1, (batch_size, k, 2)).astype(np.float32)
    batch[f"{who}_pose_mask"] = np.ones((batch_size, k), np.float32)
  return batch


def _list(text: str, name: str, cast=str) -> list:
  items = [x.strip() for x in text.split(",") if x.strip()]
  if not items:
    raise SystemExit(f"--{name} is empty")
  try:
    return [x if x == "paper" else cast(x) for x in items]
  except ValueError:
    raise SystemExit(f"--{name}={text!r}: expected a comma list of {cast.__name__} or 'paper'"
                     ) from None


def time_cascade(stages, batch, key, iters: int
                 ) -> tuple[float, dict[str, float], dict[str, int]]:
  """(compile seconds, {stage: median seconds}, {stage: output resolution}) of running
  ``stages`` in order on ``batch``.

  Each stage is blocked on before the next starts: stages are sequential anyway (each samples from
  the previous one's output), so the per-stage sum is the cascade's latency.
  """
  from tryon_jax.diffusion import cascade as cascade_lib  # pylint: disable=g-import-not-at-top

  def run_once() -> dict[str, float]:
    seconds, previous = {}, None
    for i, stage in enumerate(stages):
      start = time.perf_counter()
      previous = jax.block_until_ready(stage(batch, jax.random.fold_in(key, i),
                                             lowres=previous if stage.takes_lowres else None))
      seconds[stage.name] = time.perf_counter() - start
    return seconds

  start = time.perf_counter()  # first run through the public Cascade: compiles every stage
  outputs = cascade_lib.Cascade(stages)(batch, key)
  jax.block_until_ready(outputs)
  first = time.perf_counter() - start
  for name, image in outputs.items():
    if not np.all(np.isfinite(np.asarray(image))):
      raise SystemExit(f"stage {name!r} sampled non-finite values: the timing is meaningless")
  runs = [run_once() for _ in range(iters)]
  per_stage = {s.name: common.median([r[s.name] for r in runs]) for s in stages}
  resolutions = {name: int(image.shape[1]) for name, image in outputs.items()}
  return max(first - sum(per_stage.values()), 0.0), per_stage, resolutions


def run(args: argparse.Namespace) -> list[dict]:
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from tryon_jax import models  # pylint: disable=g-import-not-at-top
  from tryon_jax.diffusion import cascade as cascade_lib  # pylint: disable=g-import-not-at-top

  if args.iters < 1:
    raise SystemExit(f"--iters={args.iters} must be >= 1")
  samplers = _list(args.samplers, "samplers")
  steps_list = _list(args.steps, "steps", int)
  batches = _list(args.batch, "batch", int)
  cascade_name, configs = stage_configs(args)
  with nnx.use_eager_sharding(False):
    modules = {name: models.build_model(cfg.model, rngs=nnx.Rngs(args.seed))
               for name, cfg in configs.items()}
  base = configs["base128"]
  info = common.device_info()
  results = []
  for sampler in samplers:
    for steps in steps_list:
      stages = [cascade_lib.Stage.from_module(
          cfg, modules[name], name=name, sampler=None if sampler == "paper" else sampler,
          steps=None if steps == "paper" else steps) for name, cfg in configs.items()]
      for batch_size in batches:
        batch = inference_batch(base, batch_size, args.seed)
        compile_s, per_stage, resolutions = time_cascade(stages, batch, jax.random.key(args.seed), args.iters)
        latency = sum(per_stage.values())
        results.append({
            "benchmark": TABLE, **info, "cascade": cascade_name,
            "dtype": str(base.model.dtype), "sampler": sampler, "steps": steps,
            "stage_samplers": {s.name: s.config.diffusion.sampler for s in stages},
            "stage_steps": {s.name: int(s.config.diffusion.sample_steps) for s in stages},
            "stage_resolution": resolutions,
            "batch": batch_size, "compile_s": compile_s, "stage_s": per_stage,
            "latency_s": latency, "s_per_image": latency / batch_size,
            "images_per_s": batch_size / latency, "overrides": list(args.set)})
        common.emit(results[-1])
  return results


def main(argv: Sequence[str] | None = None) -> None:
  args = parse_args(argv)
  results = run(args)
  if args.results:
    command = common.command_line()
    for r in results:
      common.append_row(args.results, TABLE, COLUMNS, {
          **r, "device": r["device_kind"], "base_s": r["stage_s"].get("base128", ""),
          "sr256_s": r["stage_s"].get("sr256", ""), "sr1024_s": r["stage_s"].get("sr1024", ""),
          "command": command})


if __name__ == "__main__":
  main()

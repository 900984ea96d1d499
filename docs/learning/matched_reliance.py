"""Garment reliance of trained learning-study runs at equal log-SNR levels, whatever their schedule.

    PYTHONPATH=. python docs/learning/matched_reliance.py OUT.json NAME [NAME ...]

The record of the comparison in docs/learning/README.md ("What the shifted schedule changed"): for
each named run, benchmarks.learning.garment_reliance at the t where the run's own schedule reaches
each log-SNR in LOGSNR (found by bisection). RUNS names the workdirs the runs were trained in.
"""

import json
import sys

from benchmarks import learning
from tryon_jax.diffusion import schedules
from tryon_jax.train import loop

LOGSNR = (0.0, -2.25, -5.45)  # the unshifted schedule's t = 0.5 and 0.8, and the shifted one's 0.8
_UNSHIFTED = ["diffusion.logsnr_shift=0.0", "diffusion.logsnr_shift_interpolated=False",
              "diffusion.train_noise_aug_max=0.3"]  # the previous configs/learning.py
RUNS = {  # name: (workdir, variant, --set overrides of configs/learning.py)
    "seed0_unshifted_parallel": ("/tmp/r1b", "parallel", _UNSHIFTED),
    "seed0_unshifted_concat": ("/tmp/r2c", "concat", _UNSHIFTED),
    "seed0_shifted_parallel": ("/tmp/i4", "parallel", []),
    "seed0_shifted_concat": ("/tmp/i4", "concat", []),
    "seed1_unshifted_parallel": ("/tmp/r3", "parallel", ["seed=1"] + _UNSHIFTED),
    "seed1_unshifted_concat": ("/tmp/r3", "concat", ["seed=1"] + _UNSHIFTED),
    "seed1_shifted_parallel": ("/tmp/i4s1", "parallel", ["seed=1"]),
    "seed1_shifted_concat": ("/tmp/i4s1", "concat", ["seed=1"]),
}


def t_at_logsnr(schedule: schedules.Schedule, logsnr: float) -> float:
  """The t in [0, 1] where the (decreasing) schedule's log-SNR equals ``logsnr``."""
  lo, hi = 0.0, 1.0
  for _ in range(60):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if float(schedule.logsnr(mid)) > logsnr else (lo, mid)
  return (lo + hi) / 2


def main(out_path: str, names: list[str]) -> None:
  out, batch, masks = {}, None, None
  for name in names:
    workdir, variant, sets = RUNS[name]
    args = learning.parse_args(["--workdir", workdir] + sum((["--set", s] for s in sets), []))
    data = learning.prepare_data(args)
    config = learning.make_config(variant, args, data["train"][0])
    if batch is None:
      batch, masks = learning.eval_batch(config, data, "test", args.num_test)
    schedule = schedules.make_schedule(config.diffusion)
    levels = [round(t_at_logsnr(schedule, level), 4) for level in LOGSNR]
    spec, _, state = loop.restore_state(config, f"{workdir}/{variant}")
    out[name] = learning.garment_reliance(config, spec, state, batch, masks, args.seed, levels)
    print(json.dumps({name: out[name]}), flush=True)
  with open(out_path, "w", encoding="utf-8") as f:
    json.dump(out, f, indent=1)


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2:])

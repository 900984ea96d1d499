"""How much garment pattern is left in the learning study's 32 px records, and what pattern-free
predictions score on them ("Is there a pattern to transfer at 32 px?" in docs/learning/README.md).

    PYTHONPATH=. python docs/learning/pattern_reference.py OUT.json WORKDIR SCALE [SCALE ...]

For each pattern scale, renders the study's held-out pairs (benchmarks.learning.prepare_data's test
split: seed 10,000, --num_test 32, rendered at 128 px) twice: as the study does, and as a "flat
twin" where the same garment has no pattern and no prints (every pattern colour is the base colour;
the cloth shading and every other pixel are the same draws), with the study's own prepare_data and
flat_twin_targets. Per scale it reports, over the target's garment pixels:

  * periodic_period_px: for the stripe, check and dot garments, the pattern period in pixels of
    the 32 px record (the render's period over the record's crop, times the record size);
  * pattern_variance: the variance about its mean of (target - flat twin), summed over RGB, in
    [0, 1] pixel units: the pattern's signal left at 32 px; pattern_variance_render: the same on
    the renderer's 128 px images of the targets (before JPEG, crop and downscale);
  * flat_twin: benchmarks.learning.garment_metrics of the flat twin against the target (the right
    base colour and shading in place, no pattern);
  * mean_colour: the target's garment pixels replaced by their mean colour (right colour, nothing
    else; its detail_corr_garment is 0 by construction);
  * copy_garment_input: I_c itself, as in the study's reports.
"""

import argparse
import glob
import json
import os
import sys

import numpy as np

from benchmarks import learning
from data_pipelines import synthetic
from tryon_jax.data import schema, synthetic_garment, synthetic_render, tfrecord


def eval_set(workdir: str, scale: float):
  """The study's held-out eval batch at one pattern scale, its garment masks, the targets' flat
  twins and the records' crop sizes, made by benchmarks.learning.prepare_data (whose training
  split, one pair here, is not used)."""
  args = learning.parse_args(["--workdir", workdir, "--steps", "1", "--num_train", "1",
                              "--pattern_scale", str(scale)])
  data = learning.prepare_data(args)
  config = learning.make_config("parallel", args, data["test"][0])
  batch, masks = learning.eval_batch(config, data, "test", args.num_test)
  twin = learning.flat_twin_targets(config, data, "test", batch, masks)
  return batch, masks, twin, crop_sizes(data["test"][0])


def crop_sizes(records_glob: str) -> dict[str, float]:
  """Record id -> side of the square person crop, in render pixels."""
  sizes = {}
  for path in glob.glob(records_glob):
    for _, raw in tfrecord.read_tfrecord(path):
      rec = schema.deserialize(raw)
      sizes[rec.id] = float(rec.person_crop[2])
  return sizes


def render_pattern_variance(args: argparse.Namespace, scale: float,
                            crops: dict[str, float]) -> tuple[list[float], list[float]]:
  """pattern_variance of each held-out target as rendered (synthetic_render, render size), and the
  periodic garments' periods in record pixels."""
  out, periods = [], []
  resolution = learning.make_config("parallel", args, "").data.resolution
  for index in range(args.num_test):
    kwargs = dict(resolution=args.synthetic_resolution,
                  seed=args.seed + learning.SPLIT_SEED_OFFSET["test"], split="test",
                  pattern_scale=scale)
    ex = synthetic_render.render_example(index, **kwargs)
    twin = synthetic_render.render_example(index, flat_garment=True, **kwargs)
    if ex.meta["pattern"] in synthetic_garment.PERIODIC_KINDS:
      crop = crops[f"{synthetic.example_id(index)}_00__{synthetic.example_id(index)}_01"]
      periods.append(ex.meta["pattern_period_px"] * resolution / crop)
    mask = ex.person_parse == synthetic_render.LABELS["upper_clothes"]
    pattern = (ex.person.astype(np.float64) - twin.person) / 255
    out.append(float(pattern[mask].var(0).sum()))
  return out, periods


def main(argv):
  out_path, workdir, scales = argv[0], argv[1], [float(s) for s in argv[2:]]
  args = learning.parse_args(["--workdir", workdir, "--steps", "1"])
  report = {"command": "python docs/learning/pattern_reference.py " + " ".join(argv),
            "num_test": args.num_test, "scales": {}}
  for scale in scales:
    batch, masks, twin, crops = eval_set(os.path.join(workdir, f"scale{scale}"), scale)
    target = (np.clip(batch["person"], -1, 1) + 1) / 2
    pattern = target - (np.clip(twin, -1, 1) + 1) / 2
    variance = [float(p[m].var(0).sum()) for p, m in zip(pattern, masks)]
    mean_colour = learning.mean_colour_targets(batch["person"], masks)
    at_render, periods = render_pattern_variance(args, scale, crops)
    scores = {"periodic_period_px": {"min": min(periods), "median": float(np.median(periods)),
                                     "max": max(periods), "count": len(periods)},
              "pattern_variance": float(np.mean(variance)),
              "pattern_variance_per_example": variance,
              "pattern_variance_render": float(np.mean(at_render)),
              "pattern_variance_render_per_example": at_render}
    for name, pred in (("flat_twin", twin), ("mean_colour", mean_colour),
                       ("copy_garment_input", batch["garment"])):
      scores[name] = learning.garment_metrics(pred, batch["person"], masks)
    report["scales"][str(scale)] = scores
    summary = {name: {k: round(v, 4) for k, v in scores[name].items() if k != "per_example"}
               for name in ("flat_twin", "mean_colour", "copy_garment_input")}
    print(json.dumps({"scale": scale, "periodic_period_px": scores["periodic_period_px"],
                      "pattern_variance": scores["pattern_variance"],
                      "pattern_variance_render": scores["pattern_variance_render"], **summary}),
          flush=True)
  with open(out_path, "w", encoding="utf-8") as f:
    json.dump(report, f, indent=1)


if __name__ == "__main__":
  main(sys.argv[1:])

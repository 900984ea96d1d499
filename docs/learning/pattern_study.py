"""The tables of "Coarse patterns" in docs/learning/README.md, from two study reports.

    PYTHONPATH=. python docs/learning/pattern_study.py PARALLEL_DIR CONCAT_DIR OUT_DIR [REFERENCE.json]

The DIRs are the --out of `benchmarks.learning --variants parallel` and `--variants concat` on the
same workdir and steps. Writes OUT_DIR/{parallel,concat}.json (their reports), OUT_DIR/grid.png
(the parallel grid with the concat sample column added) and OUT_DIR/loss.png (both curves), and
prints, as markdown: each variant's garment scores; parallel - concat over the same held-out pairs
(mean and standard error, benchmarks.learning.paired_difference); and detail_corr_garment by the
garment's pattern kind (re-rendered from the report's eval ids: kinds are not in the records).
REFERENCE.json (docs/learning/pattern_reference.py) adds its rows at the report's pattern scale.
"""

import json
import os
import shutil
import sys

import numpy as np
from PIL import Image

from benchmarks import learning
from tryon_jax.data import synthetic_garment, synthetic_render

METRICS = ("psnr_garment", "ssim", "ssim_garment", "hist_l1_garment", "detail_corr_garment")


def pattern_kinds(report: dict) -> list[str]:
  """The garment pattern kind of each scored pair, re-rendered from its id."""
  split, seed = ("test", report["seed"] + 10_000) if report["eval_split"] == "test" else (
      "train", report["seed"])
  kinds = []
  for rid in report["eval_ids"]:  # "<example_id>_00__<example_id>_01"
    ex = synthetic_render.render_example(int(rid.split("_")[0]), resolution=128, seed=seed,
                                         split=split, pattern_scale=report["pattern_scale"])
    kinds.append(ex.meta["pattern"])
  return kinds


def row(name: str, scores: dict) -> str:
  return f"| {name} | " + " | ".join(f"{scores[m]:.3f}" for m in METRICS) + " |"


def main(argv):
  out = argv[2]
  os.makedirs(out, exist_ok=True)
  reports = []
  for src, variant in zip(argv[:2], learning.VARIANTS):
    shutil.copyfile(os.path.join(src, "results.json"), os.path.join(out, f"{variant}.json"))
    with open(os.path.join(src, "results.json"), encoding="utf-8") as f:
      reports.append(json.load(f))
  runs = [r["variants"][v] for r, v in zip(reports, learning.VARIANTS)]
  if reports[0]["eval_ids"] != reports[1]["eval_ids"]:
    raise SystemExit("the two reports scored different pairs")
  grids = [np.asarray(Image.open(os.path.join(src, "grid.png"))) for src in argv[:2]]
  column = grids[1].shape[1] // 4  # I_a, I_c, target, samples
  if not (grids[0][:, :3 * column] == grids[1][:, :3 * column]).all():
    raise SystemExit("the two grids show different inputs")
  Image.fromarray(np.concatenate([grids[0], grids[1][:, 3 * column:]], 1)).save(
      os.path.join(out, "grid.png"))
  learning.write_loss_plot(os.path.join(out, "loss.png"),
                           {v: run["loss_curve"] for v, run in zip(learning.VARIANTS, runs)})
  print("| scores | " + " | ".join(METRICS) + " |")
  print("|---|" + "---|" * len(METRICS))
  for variant, run in zip(learning.VARIANTS, runs):
    print(row(f"{variant} ({run['train_steps']} steps)", run))
  print(row("I_c copied", reports[0]["reference"]["copy_garment_input"]))
  if len(argv) > 3:
    with open(argv[3], encoding="utf-8") as f:
      reference = json.load(f)["scales"][str(float(reports[0]["pattern_scale"]))]
    for name in ("flat_twin", "mean_colour"):
      print(row(name, reference[name]))
  diff = learning.paired_difference(*runs)
  print("\n| parallel - concat | " + " | ".join(
      f"{diff[m]['mean']:+.3f} ± {diff[m]['sem']:.3f}" for m in METRICS) + " |")
  kinds = np.asarray(pattern_kinds(reports[0]))
  periodic = np.isin(kinds, synthetic_garment.PERIODIC_KINDS)
  print("\n| detail_corr_garment | periodic (n) | prints and gradients (n) |\n|---|---|---|")
  for variant, run in zip(learning.VARIANTS, runs):
    values = np.asarray(run["per_example"]["detail_corr_garment"])
    print(f"| {variant} | {values[periodic].mean():.3f} ({periodic.sum()}) | "
          f"{values[~periodic].mean():.3f} ({(~periodic).sum()}) |")


if __name__ == "__main__":
  main(sys.argv[1:])

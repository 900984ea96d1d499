"""The tables of "Coarse patterns" in docs/learning/README.md, from two study reports.

    PYTHONPATH=. python docs/learning/pattern_study.py PARALLEL_DIR CONCAT_DIR OUT_DIR [REFERENCE.json]

The DIRs are the --out of `benchmarks.learning --variants parallel` and `--variants concat` on the
same workdir and steps. Writes OUT_DIR/{parallel,concat}.json (their reports), OUT_DIR/grid.png
(the parallel grid with the concat sample column added) and OUT_DIR/loss.png (both curves), and
prints, as markdown: each variant's garment scores; parallel - concat over the same held-out pairs
(mean and standard error, benchmarks.learning.paired_difference); and detail_corr_garment (and
pattern_corr_garment and pattern_rms_garment, where the reports have them) by the garment's
pattern kind (re-rendered from the report's eval ids: kinds are not in the records).
REFERENCE.json (docs/learning/pattern_reference.py) adds its flat_twin and mean_colour rows at the
report's pattern scale to reports that lack them (those made before the study scored them).
"""

import json
import os
import shutil
import sys

import numpy as np
from PIL import Image

from benchmarks import learning
from tryon_jax.data import synthetic_garment, synthetic_render

BASE_METRICS = ("psnr_garment", "ssim", "ssim_garment", "hist_l1_garment", "detail_corr_garment")
# In the reports made since the study rendered flat twins (pattern_rms since it scored that too):
PATTERN_METRICS = ("pattern_corr_garment", "pattern_rms_garment")


def pattern_kinds(report: dict) -> list[str]:
  """The garment pattern kind of each scored pair, re-rendered from its id."""
  split = report["eval_split"]
  seed = report["seed"] + learning.SPLIT_SEED_OFFSET[split]
  kinds = []
  for rid in report["eval_ids"]:  # "<example_id>_00__<example_id>_01"
    ex = synthetic_render.render_example(int(rid.split("_")[0]), resolution=128, seed=seed,
                                         split=split, pattern_scale=report["pattern_scale"])
    kinds.append(ex.meta["pattern"])
  return kinds


def row(name: str, scores: dict, metrics: tuple[str, ...]) -> str:
  return f"| {name} | " + " | ".join(f"{scores[m]:.3f}" if m in scores else "–"
                                     for m in metrics) + " |"


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
  metrics = BASE_METRICS + tuple(m for m in PATTERN_METRICS if all(m in r for r in runs))
  print("| scores | " + " | ".join(metrics) + " |")
  print("|---|" + "---|" * len(metrics))
  for variant, run in zip(learning.VARIANTS, runs):
    print(row(f"{variant} ({run['train_steps']} steps)", run, metrics))
  references = dict(reports[0]["reference"])
  if len(argv) > 3:  # reports from before the study scored the flat twins itself
    with open(argv[3], encoding="utf-8") as f:
      scale = json.load(f)["scales"][str(float(reports[0]["pattern_scale"]))]
    for name in ("flat_twin", "mean_colour"):
      references.setdefault(name, scale[name])
  for name in ("target", "copy_garment_input", "flat_twin", "mean_colour"):
    if name in references:
      print(row(name, references[name], metrics))
  diff = learning.paired_difference(*runs)
  print("\n| parallel - concat | " + " | ".join(
      f"{diff[m]['mean']:+.3f} ± {diff[m]['sem']:.3f}" for m in metrics) + " |")
  kinds = np.asarray(pattern_kinds(reports[0]))
  periodic = np.isin(kinds, synthetic_garment.PERIODIC_KINDS)
  for metric in (m for m in metrics if m.startswith(("detail_", "pattern_"))):  # by the kind
    print(f"\n| {metric} | periodic (n) | prints and gradients (n) |\n|---|---|---|")
    rows = list(zip(learning.VARIANTS, runs)) + [
        (name, references[name]) for name in ("target", "copy_garment_input")
        if metric in references.get(name, {}).get("per_example", {})]
    for name, scores in rows:
      values = np.asarray(scores["per_example"][metric])
      print(f"| {name} | {values[periodic].mean():.3f} ({periodic.sum()}) | "
            f"{values[~periodic].mean():.3f} ({(~periodic).sum()}) |")


if __name__ == "__main__":
  main(sys.argv[1:])

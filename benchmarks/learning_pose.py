"""Does the learning study's Parallel-UNet vs concat gap change with the warp a pair needs?

    python -m benchmarks.learning_pose --workdir=/tmp/n8k \
        docs/learning/long/data8k/{,seed1/,seed2/}{parallel,concat}.json

Reads benchmarks.learning reports: results.json files, or directories of the per-variant copies
kept in docs/learning (the reports in one directory with the same eval split are one run). For
each run, and for the runs of each training-set size pooled (each pair's parallel - concat averaged
over the runs), prints markdown rows: the mean score over the pairs below / at or above the median
pose shift, Spearman's rho with the shift and its p-value (learning.trend_with_pose_shift). A row
for I_c itself (copy_garment_input: the garment unwarped) shows how much harder a large shift
makes a pair. Then, per pool, the gap's mean and standard error over all pairs, and its large -
small difference with the Welch standard error. The paper's claim (cross-attention wins where the
garment must be warped) predicts parallel - concat rising in PSNR and SSIM, and falling in
histogram distance, from the small-shift half to the large-shift half.

Reports written before benchmarks.learning recorded ``eval_pose_shift`` get the shifts from the
records in WORKDIR/data, after a check that those are the pairs the report scored: the same ids
where the report lists them, and the same copy_garment_input scores.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
from collections.abc import Sequence

import numpy as np

from benchmarks import learning

METRICS = ("psnr_garment", "ssim", "ssim_garment", "hist_l1_garment")


def load_runs(paths: Sequence[str]) -> dict[str, dict]:
  """{"DIR (split)": {"num_train", "eval_split", "report" (the first one read), "variants"}}."""
  files = []
  for path in paths:
    files += sorted(glob.glob(os.path.join(path, "*.json"))) if os.path.isdir(path) else [path]
  runs = {}
  for path in files:
    with open(path, encoding="utf-8") as f:
      report = json.load(f)
    if "variants" not in report:
      raise SystemExit(f"{path}: not a benchmarks.learning report (no 'variants')")
    report.setdefault("eval_split", "test")  # reports from before --eval_split: held-out
    key = f"{os.path.dirname(path) or '.'} ({report['eval_split']})"
    run = runs.setdefault(key, {"num_train": report["num_train"],
                                "eval_split": report["eval_split"], "report": report,
                                "variants": {}})
    run["variants"].update(report["variants"])
  return runs


def pose_shifts(report: dict, workdir: str | None, cache: dict) -> np.ndarray:
  """[N] the report's eval_pose_shift, or the shifts of its pairs recomputed from WORKDIR."""
  if "eval_pose_shift" in report:
    return np.asarray(report["eval_pose_shift"], np.float64)  # None (lay-flat) -> NaN
  split, num = report["eval_split"], int(report["num_test"])
  if (split, num) not in cache:
    records = os.path.join(workdir or "", "data", f"records_{split}", "*.tfrecord")
    if not workdir or not glob.glob(records):
      raise SystemExit(f"--workdir={workdir}: no records at {records} for a report without "
                       f"eval_pose_shift ({report['command']})")
    args = learning.parse_args(["--workdir", workdir, "--num_test", str(num)])
    config = learning.make_config(learning.VARIANTS[0], args, records)
    data = {split: (records, os.path.join(workdir, "data", f"raw_{split}"))}
    batch, masks = learning.eval_batch(config, data, split, num)
    copy_input = learning.garment_metrics(batch["garment"], batch["person"], masks)
    cache[split, num] = (learning.batch_ids(batch), copy_input, learning.pose_shift(batch))
  ids, copy_input, shift = cache[split, num]
  scored = report["reference"]["copy_garment_input"]["per_example"]
  if report.get("eval_ids", ids) != ids or not all(
      np.allclose(scored[m], copy_input["per_example"][m], atol=1e-6) for m in METRICS):
    raise SystemExit(f"--workdir={workdir}: its {split} pairs are not the ones scored by "
                     f"{report['command']}")
  return shift


def welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
  """mean(a) - mean(b) and its standard error (unequal variances)."""
  return float(a.mean() - b.mean()), float(np.sqrt(a.var(ddof=1) / len(a) +
                                                   b.var(ddof=1) / len(b)))


def _row(name: str, trend: dict[str, dict]) -> str:
  def cell(t):
    rho = "–" if t["spearman"] is None else f"ρ {t['spearman']:+.2f}, p {t['spearman_p']:.2f}"
    return f"{t['small']:+.3f} → {t['large']:+.3f} ({rho})"
  return f"| {name} | " + " | ".join(cell(trend[m]) for m in METRICS) + " |"


def main(argv: Sequence[str] | None = None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("reports", nargs="+", help="results.json files or directories of them")
  p.add_argument("--workdir", default=None,
                 help="a benchmarks.learning workdir whose data/ holds the scored pairs (needed "
                      "only for reports without eval_pose_shift)")
  args = p.parse_args(argv)
  runs, cache = load_runs(args.reports), {}
  out = {"runs": {}, "pooled": {}, "reference": {}}
  print("| run | scores | " + " | ".join(METRICS) + " |")
  print("|---|---|" + "---|" * len(METRICS))
  pools = {}
  for name, run in runs.items():
    shift = pose_shifts(run["report"], args.workdir, cache)
    rows = {v: run["variants"][v]["per_example"] for v in learning.VARIANTS
            if v in run["variants"]}
    if len(rows) == len(learning.VARIANTS):
      gap = learning.per_pair_difference(*(run["variants"][v] for v in learning.VARIANTS))
      rows["parallel - concat"] = gap
      pool = pools.setdefault((run["num_train"], run["eval_split"]), {
          "shift": shift, "gaps": [],
          "copy": run["report"]["reference"]["copy_garment_input"]["per_example"]})
      if not np.array_equal(pool["shift"], shift, equal_nan=True):
        raise SystemExit(f"{name}: other pairs than the other runs on {run['num_train']} pairs")
      pool["gaps"].append(gap)
    for what, values in rows.items():
      out["runs"][f"{name}: {what}"] = trend = learning.trend_with_pose_shift(values, shift)
      print(_row(f"{name} | {what}", trend))
  for (num_train, split), pool in pools.items():
    name = f"{num_train} pairs ({split}), {len(pool['gaps'])} runs pooled"
    gap = {m: np.mean([g[m] for g in pool["gaps"]], axis=0) for m in METRICS}
    trend = learning.trend_with_pose_shift(gap, pool["shift"])
    keep, large = learning.split_at_median_shift(pool["shift"])
    for m in METRICS:
      trend[m]["mean"] = float(gap[m].mean())  # over all pairs, as paired_difference
      trend[m]["sem"] = float(gap[m].std(ddof=1) / np.sqrt(len(gap[m])))
      trend[m]["large_minus_small"], trend[m]["large_minus_small_sem"] = welch(
          gap[m][keep][large], gap[m][keep][~large])
    out["pooled"][name] = trend
    print(_row(f"{name} | parallel - concat", trend))
    # The same pairs scored by copying I_c unwarped: how much harder a large shift makes a pair.
    out["reference"][name] = copy = learning.trend_with_pose_shift(pool["copy"], pool["shift"])
    print(_row(f"{num_train} pairs ({split}) | copy I_c (no warp)", copy))
  for name, trend in out["pooled"].items():
    print(f"{name}, all pairs: " + ", ".join(
        f"{m} {trend[m]['mean']:+.3f} ± {trend[m]['sem']:.3f}" for m in METRICS))
    print(f"{name}, large - small half: " + ", ".join(
        f"{m} {trend[m]['large_minus_small']:+.3f} ± {trend[m]['large_minus_small_sem']:.3f}"
        for m in METRICS))
  return out


if __name__ == "__main__":
  main()

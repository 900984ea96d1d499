"""What the pose change costs each variant of the learning study: the same-pose control.

    python -m benchmarks.learning_control PARALLEL.json CONCAT.json \
        PARALLEL_SAME_POSE.json CONCAT_SAME_POSE.json

The first two are reports (results.json, or their copies in docs/learning) of `benchmarks.learning`
on the usual set, the last two of the same command with `--same_pose`: the same targets, each I_c
showing the garment in the target's own pose (still cut around the garment, so still scaled and
moved, but not re-posed). The four must have scored the same pairs. Prints, as markdown, each
run's garment scores, and over the same pairs (mean and standard error): what the pose change
does to each variant (usual - same-pose, per pair: negative PSNR, SSIM and correlations are a
loss) and parallel's change less concat's. The paper's claim, cross-attention warps the garment
and concatenation does not, predicts that the pose change costs concat more (a positive last row
in PSNR, SSIM and the correlations, a negative one in histogram distance).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from benchmarks import learning

METRICS = ("psnr_garment", "ssim_garment", "hist_l1_garment", "detail_corr_garment",
           "pattern_corr_garment")
_cell = learning.format_mean_and_sem


def main(argv: Sequence[str] | None = None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("reports", nargs=4, help="parallel, concat, parallel --same_pose, concat "
                                          "--same_pose (results.json files)")
  args = p.parse_args(argv)
  reports = []
  for path in args.reports:
    with open(path, encoding="utf-8") as f:
      reports.append(json.load(f))
  if any(r["eval_ids"] != reports[0]["eval_ids"] for r in reports):
    raise SystemExit(f"{args.reports}: the four reports scored different pairs")
  if [bool(r.get("same_pose")) for r in reports] != [False, False, True, True]:
    raise SystemExit(f"{args.reports}: expected two usual reports, then two --same_pose ones")
  order = [(v, same) for same in (False, True) for v in learning.VARIANTS]
  runs = {}
  for report, (variant, same), path in zip(reports, order, args.reports):
    if variant not in report["variants"]:
      raise SystemExit(f"{path}: has no {variant} run")
    runs[variant, same] = report["variants"][variant]
  print("| run | " + " | ".join(METRICS) + " |\n|---|" + "---|" * len(METRICS))
  for (variant, same), run in runs.items():
    name = f"{variant}, {'same pose' if same else 'pose change'} ({run['train_steps']} steps)"
    print(f"| {name} | " + " | ".join(f"{run[m]:.3f}" for m in METRICS) + " |")
  change = {v: learning.per_pair_difference(runs[v, False], runs[v, True])
            for v in learning.VARIANTS}
  out = {f"{v}_pose_change_minus_same_pose": {m: learning.mean_and_sem(change[v][m])
                                              for m in METRICS} for v in learning.VARIANTS}
  out["parallel_minus_concat"] = {
      m: learning.mean_and_sem(change["parallel"][m] - change["concat"][m]) for m in METRICS}
  print("\n| over the same pairs | " + " | ".join(METRICS) + " |\n|---|" + "---|" * len(METRICS))
  for v in learning.VARIANTS:
    print(f"| {v}: pose change − same pose | "
          + " | ".join(_cell(out[f"{v}_pose_change_minus_same_pose"][m]) for m in METRICS) + " |")
  print("| parallel's − concat's | "
        + " | ".join(_cell(out["parallel_minus_concat"][m]) for m in METRICS) + " |")
  return out


if __name__ == "__main__":
  main()

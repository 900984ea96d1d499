"""Two learning-study runs over the same pairs: their scores and the change per pair.

    python -m benchmarks.learning_compare NEW.json BASE.json [--variant parallel]
        [--base_variant concat] [--pairs all|noise|images] [--json OUT.json]

NEW and BASE are benchmarks.learning reports (results.json, or the per-variant copies kept in
docs/learning) that scored the same pairs. Prints, as markdown, one row per run with the columns
of docs/learning's tables (garment PSNR, SSIM, SSIM on the garment, detail and pattern
correlation with the number of pairs whose pattern score passes PLACED, what the right garment
adds over another pair's, and the garment reliance in dB), then NEW - BASE per pair: the mean and
standard error of the differences, which is what a comparison over the same pairs rests on.
``--pairs noise`` (or ``images``) keeps only the scored pairs that wear a noise garment (or do
not), for reports of training pairs made with --noise_garments. ``--json`` writes the runs' rows
and the per-pair differences of every metric.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import numpy as np

from benchmarks import learning

METRICS = ("psnr_garment", "ssim", "ssim_garment", "detail_corr_garment", "pattern_corr_garment")
# A pair whose pattern score passes this counts as placing the pattern ("pairs > 0.2" in the
# docs): copying I_c unwarped scores about 0.10 on the coarse-pattern pairs.
PLACED = 0.2
RELIANCE_TIMES = ("t=0.5", "t=0.8")


def load_run(path: str, variant: str) -> tuple[dict, dict]:
  """(the report, the variant's scores) from a benchmarks.learning report at ``path``."""
  try:
    with open(path, encoding="utf-8") as f:
      report = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise SystemExit(f"{path}: not a readable benchmarks.learning report ({e})") from e
  if variant not in report.get("variants", {}):
    raise SystemExit(f"{path}: has no {variant} run (it has {sorted(report.get('variants', {}))})")
  return report, report["variants"][variant]


def pair_selection(report: dict, pairs: str, path: str) -> np.ndarray:
  """[N] bool over the report's scored pairs: all of them, or those that wear a noise garment
  ("noise") or their pattern ("images"), by the report's ``eval_noise_garment``."""
  if pairs == "all":
    return np.ones(len(report["eval_ids"]), bool)
  if "eval_noise_garment" not in report:
    raise SystemExit(f"{path}: records no eval_noise_garment (a set without noise garments, or a "
                     f"report from before it was recorded), so --pairs {pairs} cannot be chosen")
  noise = np.asarray(report["eval_noise_garment"], bool)
  return noise if pairs == "noise" else ~noise


def summary(run: dict, keep: np.ndarray) -> dict:
  """One run's row over the pairs ``keep`` [N] bool: mean scores, pairs placing the pattern, what
  the right garment adds over another pair's (per pair), and the garment reliance, which is
  measured over all the pairs at once and so only given when all are kept."""
  scores = {m: np.asarray(run["per_example"][m])[keep] for m in METRICS}
  row = {"pairs": int(keep.sum()), **{m: float(v.mean()) for m, v in scores.items()}}
  row["pairs_placed"] = int((scores["pattern_corr_garment"] > PLACED).sum())
  if "other_garment" in run:
    other = run["other_garment"]["per_example"]
    for m in ("pattern_corr_garment", "psnr_garment"):
      row[f"own_minus_other_{m}"] = learning.mean_and_sem(
          scores[m] - np.asarray(other[m])[keep])
  if keep.all():
    for t in RELIANCE_TIMES:
      if t in run.get("garment_reliance", {}):
        row[f"reliance_db_{t}"] = float(run["garment_reliance"][t]["reliance_db"])
  return row


def _cell(stat: dict[str, float] | None) -> str:
  return "" if stat is None else learning.format_mean_and_sem(stat)


def _row(name: str, row: dict) -> str:
  reliance = " / ".join(f"{row[f'reliance_db_{t}']:.2f}" for t in RELIANCE_TIMES
                        if f"reliance_db_{t}" in row)
  cells = [f"{row[m]:.3f}" for m in METRICS[:-1]]
  cells += [f"{row['pattern_corr_garment']:+.3f} ({row['pairs_placed']})",
            _cell(row.get("own_minus_other_pattern_corr_garment")),
            _cell(row.get("own_minus_other_psnr_garment")), reliance]
  return f"| {name} | " + " | ".join(cells) + " |"


def main(argv: Sequence[str] | None = None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("new", help="benchmarks.learning report (results.json or a docs copy)")
  p.add_argument("base", help="the report to compare it with, over the same pairs")
  p.add_argument("--variant", default="parallel", choices=learning.VARIANTS)
  p.add_argument("--base_variant", default=None, choices=learning.VARIANTS,
                 help="BASE's variant (default: --variant)")
  p.add_argument("--pairs", default="all", choices=("all", "noise", "images"),
                 help="score only the pairs that wear a noise garment, or only the others "
                      "(reports of --eval_split train with --noise_garments)")
  p.add_argument("--json", default=None, help="also write the rows and differences here")
  args = p.parse_args(argv)
  base_variant = args.base_variant or args.variant
  new_report, new = load_run(args.new, args.variant)
  base_report, base = load_run(args.base, base_variant)
  if new_report["eval_ids"] != base_report["eval_ids"]:
    raise SystemExit(f"{args.new}, {args.base}: the reports scored different pairs")
  keep = pair_selection(new_report if "eval_noise_garment" in new_report else base_report,
                        args.pairs, args.new if "eval_noise_garment" in new_report else args.base)
  out = {"pairs": args.pairs,
         "new": {"path": args.new, "variant": args.variant, **summary(new, keep)},
         "base": {"path": args.base, "variant": base_variant, **summary(base, keep)},
         "new_minus_base": {m: learning.mean_and_sem(d[keep])
                            for m, d in learning.per_pair_difference(new, base).items()}}
  print("| run | PSNR garment | SSIM | SSIM garment | detail corr. | pattern corr. (pairs > "
        f"{PLACED}) | own − other: pattern | own − other: PSNR | reliance "
        f"{' / '.join(RELIANCE_TIMES)} (dB) |\n|---|" + "---|" * 8)
  for key, run in (("new", new), ("base", base)):
    kind = {"all": "", "noise": " noise", "images": " image"}[args.pairs]
    print(_row(f"{key}: {out[key]['path']} ({out[key]['variant']}, {run['train_steps']} steps, "
               f"{out[key]['pairs']}{kind} pairs)", out[key]))
  print("| new − base (per pair) | "
        + " | ".join(_cell(out["new_minus_base"][m]) for m in METRICS) + " | | | |")
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(out, f, indent=1)
  return out


if __name__ == "__main__":
  main()

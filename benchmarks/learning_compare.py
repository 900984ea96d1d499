"""Two learning-study runs over the same held-out pairs: their scores and the change per pair.

    python -m benchmarks.learning_compare NEW.json BASE.json [--variant parallel]
        [--base_variant concat] [--json OUT.json]

NEW and BASE are benchmarks.learning reports (results.json, or the per-variant copies kept in
docs/learning) that scored the same pairs. Prints, as markdown, one row per run with the columns
of docs/learning's tables (garment PSNR, SSIM, SSIM on the garment, detail and pattern
correlation with the number of pairs whose pattern score passes PLACED, what the right garment
adds over another pair's, and the garment reliance in dB), then NEW - BASE per pair: the mean and
standard error of the differences, which is what a comparison over the same pairs rests on.
``--json`` writes the runs' rows and the per-pair differences of every metric.
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


def load_run(path: str, variant: str) -> tuple[list, dict]:
  """(eval_ids, the variant's scores) from a benchmarks.learning report at ``path``."""
  try:
    with open(path, encoding="utf-8") as f:
      report = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise SystemExit(f"{path}: not a readable benchmarks.learning report ({e})") from e
  if variant not in report.get("variants", {}):
    raise SystemExit(f"{path}: has no {variant} run (it has {sorted(report.get('variants', {}))})")
  return report["eval_ids"], report["variants"][variant]


def summary(run: dict) -> dict[str, float]:
  """One run's row: its mean scores, pairs placing the pattern, own - other garment, reliance."""
  row = {m: float(run[m]) for m in METRICS}
  row["pairs_placed"] = int((np.asarray(run["per_example"]["pattern_corr_garment"]) > PLACED).sum())
  own_other = run.get("own_minus_other_garment", {})
  for m in ("pattern_corr_garment", "psnr_garment"):
    if m in own_other:
      row[f"own_minus_other_{m}"] = own_other[m]
  for t in RELIANCE_TIMES:
    if t in run.get("garment_reliance", {}):
      row[f"reliance_db_{t}"] = float(run["garment_reliance"][t]["reliance_db"])
  return row


def _cell(stat: dict[str, float] | None) -> str:
  return "" if stat is None else f"{stat['mean']:+.3f} ± {stat['sem']:.3f}"


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
  p.add_argument("--json", default=None, help="also write the rows and differences here")
  args = p.parse_args(argv)
  base_variant = args.base_variant or args.variant
  new_ids, new = load_run(args.new, args.variant)
  base_ids, base = load_run(args.base, base_variant)
  if new_ids != base_ids:
    raise SystemExit(f"{args.new}, {args.base}: the reports scored different pairs")
  out = {"new": {"path": args.new, "variant": args.variant, **summary(new)},
         "base": {"path": args.base, "variant": base_variant, **summary(base)},
         "new_minus_base": {
             m: learning.mean_and_sem(np.asarray(values) - base["per_example"][m])
             for m, values in new["per_example"].items() if m in base["per_example"]}}
  print("| run | PSNR garment | SSIM | SSIM garment | detail corr. | pattern corr. (pairs > "
        f"{PLACED}) | own − other: pattern | own − other: PSNR | reliance "
        f"{' / '.join(RELIANCE_TIMES)} (dB) |\n|---|" + "---|" * 8)
  for key, run in (("new", new), ("base", base)):
    print(_row(f"{key}: {out[key]['path']} ({out[key]['variant']}, {run['train_steps']} steps)",
               out[key]))
  print("| new − base (per pair) | "
        + " | ".join(_cell(out["new_minus_base"][m]) for m in METRICS) + " | | | |")
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(out, f, indent=1)
  return out


if __name__ == "__main__":
  main()

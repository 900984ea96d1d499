"""What pattern-free outputs score on pattern_corr_garment, and where the study's runs stand against
it ("Why is the Parallel-UNet's pattern score below zero?" in docs/learning/README.md).

    PYTHONPATH=. python docs/learning/pattern_zero.py fresh OUT.json WORKDIR [--num 256] [--seed 7]
    PYTHONPATH=. python docs/learning/pattern_zero.py runs OUT.json SAMPLES.npz REPORT.json [...]
    PYTHONPATH=. python docs/learning/pattern_zero.py regions OUT.json SAMPLES.npz [...]

``fresh`` renders --num new held-out pairs and their flat twins (benchmarks.learning.prepare_data
and flat_twin_targets with --seed, --pattern_scale; 8 training pairs, which nothing uses) and
scores, against each target, pattern-free predictions:

  * soft_twin_sigma_S: the flat twin blurred by a Gaussian of S px (benchmarks.learning's
    soft_flat_twin), so its garment's edge mixes with the surroundings;
  * soft_inside_sigma_S: the same blur within the garment mask only (normalised convolution), so
    only the inside is softened;
  * twin_shifted_{right,left,down}_1px: the flat twin moved by one pixel (a misplaced outline);
  * twin_sharpened: the flat twin with its 1 px blur subtracted once more (unsharp mask);
  * twin_darker_shading: a tone curve on the flat twin;
  * twin_plus_noise: the flat twin plus white noise (sd 0.1 in [-1, 1] units): unplaced detail.

and each again on the garment's inside and outline alone (``regions`` below).

``runs`` takes a report's samples.npz (for the scored pairs' targets, twins and masks) and study
reports (benchmarks.learning results.json) that scored the same pairs, and gives how sharp the
garment's outline is in the targets, the twins and each of the file's outputs (outline_gradient),
and per variant the mean pattern corr. and the per-pair difference from the soft twin (mean,
standard error); with two variants, also the correlation across pairs of each variant's per-pair
scores averaged over its reports (high: the pairs, not the network, set which pairs score low).

``regions`` splits each target's garment mask into its outline (the garment pixels with a
non-garment 4-neighbour) and its inside (the rest), and scores pattern corr. on each part alone:
for every output_<variant> of each samples.npz that has an output_<variant>_other_garment, with
the pair's own garment, with the previous pair's, and own - other per pair (mean, standard error);
and the soft twin. On 32 px records a garment has about 60 pixels, more than half of them on the
outline, so where a score comes from matters.
"""

import argparse
import json
import sys

import numpy as np
from scipy import ndimage

from benchmarks import learning

SIGMAS = (0.5, 1.0, 1.5)  # px of the 32 px record, around the study's SOFT_TWIN_SIGMA
NOISE_SD = 0.1  # [-1, 1] units: unplaced detail near the targets' own pattern RMS (0.07 in [0, 1])


def pattern_scores(pred: np.ndarray, target: np.ndarray, twin: np.ndarray,
                   masks: np.ndarray) -> np.ndarray:
  """Per-pair pattern_corr_garment of pred [N, R, R, 3] against target, given the flat twin."""
  return np.asarray([learning.pattern_correlation(p[m], t[m], f[m])
                     for p, t, f, m in zip(pred, target, twin, masks)])


def soft_inside(twin: np.ndarray, masks: np.ndarray, sigma: float) -> np.ndarray:
  """twin [N, R, R, 3] blurred by sigma px within each garment mask [N, R, R] only."""
  out = np.array(twin, copy=True)
  for img, m in zip(out, masks):
    weight = ndimage.gaussian_filter(m.astype(np.float64), sigma)
    blurred = ndimage.gaussian_filter(img * m[..., None], (sigma, sigma, 0))
    img[m] = (blurred / np.maximum(weight, 1e-6)[..., None])[m]
  return out


def outline_gradient(images: np.ndarray, masks: np.ndarray) -> float:
  """How sharp the garment's outline is: the mean colour-gradient magnitude ([-1, 1] units per
  pixel) of images [N, R, R, 3] on the pixels within one pixel of each garment mask's edge."""
  values = []
  for img, m in zip(images, masks):
    outline = ndimage.binary_dilation(m) & ~ndimage.binary_erosion(m)
    gy, gx = np.gradient(np.asarray(img, np.float64), axis=(0, 1))
    values.append(np.sqrt((gx ** 2 + gy ** 2).sum(-1))[outline].mean())
  return float(np.mean(values))


def garment_regions(masks: np.ndarray) -> dict[str, np.ndarray]:
  """{"inside", "outline"} [N, R, R] bool: each garment mask [N, R, R] split into its pixels
  whose 4-neighbours are all garment (pixels beyond the image edge count as non-garment) and the
  rest."""
  masks = np.asarray(masks, bool)
  inside = np.stack([ndimage.binary_erosion(m, border_value=0) for m in masks])
  return {"inside": inside, "outline": masks & ~inside}


def fresh(args: argparse.Namespace) -> dict:
  study = learning.parse_args(["--workdir", args.workdir, "--num_train", "8",
                               "--pattern_scale", str(args.pattern_scale),
                               "--num_test", str(args.num), "--seed", str(args.seed),
                               "--steps", "1"])
  data = learning.prepare_data(study)
  config = learning.make_config("parallel", study, data["train"][0])
  batch, masks = learning.eval_batch(config, data, "test", args.num)
  twin = learning.flat_twin_targets(config, data, "test", batch, masks)
  target = batch["person"]
  preds = {}
  for sigma in SIGMAS:
    preds[f"soft_twin_sigma_{sigma}"] = learning.soft_flat_twin(twin, sigma)
    preds[f"soft_inside_sigma_{sigma}"] = soft_inside(twin, masks, sigma)
  for name, axis, step in (("right", 2, 1), ("left", 2, -1), ("down", 1, 1)):
    preds[f"twin_shifted_{name}_1px"] = np.roll(twin, step, axis=axis)
  preds["twin_sharpened"] = 2 * twin - learning.soft_flat_twin(twin)  # unsharp mask, amount 1
  preds["twin_darker_shading"] = np.sign(twin) * np.abs(twin) ** 1.5  # a tone curve
  rng = np.random.default_rng(args.seed)
  preds["twin_plus_noise"] = twin + rng.normal(0.0, NOISE_SD, twin.shape).astype(twin.dtype)
  out = {name: learning.mean_and_sem(pattern_scores(p, target, twin, masks))
         for name, p in preds.items()}
  out["regions"] = {part: {name: learning.mean_and_sem(pattern_scores(p, target, twin, m))
                           for name, p in preds.items()}
                    for part, m in garment_regions(masks).items()}
  return out


def runs(args: argparse.Namespace) -> dict:
  samples = np.load(args.samples)
  target, twin = samples["target"], samples["flat_twin"]
  masks = samples["garment_mask"].astype(bool)
  soft = pattern_scores(learning.soft_flat_twin(twin), target, twin, masks)
  out, by_variant = {"soft_twin": learning.mean_and_sem(soft), "reports": {}}, {}
  images = {"target": target, "flat_twin": twin, "soft_twin": learning.soft_flat_twin(twin),
            **{k: samples[k] for k in samples.files if k.startswith("output_")}}
  out["outline_gradient"] = {k: outline_gradient(v, masks) for k, v in images.items()}
  for path in args.reports:
    with open(path, encoding="utf-8") as f:
      report = json.load(f)
    if report["eval_ids"] != [str(i) for i in samples["ids"]]:
      raise SystemExit(f"{path}: scored other pairs than {args.samples}")
    for variant, run in report["variants"].items():
      score = np.asarray(run["per_example"]["pattern_corr_garment"])
      by_variant.setdefault(variant, []).append(score)
      out["reports"][f"{path}:{variant}"] = {
          "steps": report["steps"], "same_pose": report["same_pose"],
          "pattern_corr_garment": float(score.mean()),
          "minus_soft_twin": learning.mean_and_sem(score - soft)}
  if len(by_variant) == 2:  # per-pair scores: do they follow the pairs or the network?
    a, b = (np.mean(scores, axis=0) for scores in by_variant.values())
    out["variant_mean_scores_pair_correlation"] = float(np.corrcoef(a, b)[0, 1])
  return out


def regions(args: argparse.Namespace) -> dict:
  out = {}
  for path in args.samples:
    samples = np.load(path)
    missing = {"target", "flat_twin", "garment_mask"} - set(samples.files)
    if missing:
      raise SystemExit(f"{path}: no {', '.join(sorted(missing))} (a report made before the study "
                       "rendered flat twins?)")
    target, twin = samples["target"], samples["flat_twin"]
    parts = garment_regions(samples["garment_mask"])
    variants = [k[len("output_"):-len("_other_garment")] for k in samples.files
                if k.startswith("output_") and k.endswith("_other_garment")]
    result = {"pixels": {name: float(m.sum(axis=(1, 2)).mean()) for name, m in parts.items()}}
    soft_twin = learning.soft_flat_twin(twin)
    for name, m in parts.items():
      soft = pattern_scores(soft_twin, target, twin, m)
      result[name] = {"soft_twin": learning.mean_and_sem(soft)}
      for variant in variants:
        # Clipped to the image range, as garment_metrics scores them.
        own, other = (pattern_scores(np.clip(samples[f"output_{variant}{suffix}"], -1, 1),
                                     target, twin, m) for suffix in ("", "_other_garment"))
        result[name][variant] = {"own": learning.mean_and_sem(own),
                                 "other_garment": learning.mean_and_sem(other),
                                 "own_minus_other": learning.mean_and_sem(own - other)}
    out[path] = result
  return out


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = p.add_subparsers(dest="mode", required=True)
  f = sub.add_parser("fresh")
  f.add_argument("out")
  f.add_argument("workdir")
  f.add_argument("--num", type=int, default=256)
  f.add_argument("--seed", type=int, default=7, help="not the study's 0: other held-out pairs")
  f.add_argument("--pattern_scale", type=float, default=4.0)
  r = sub.add_parser("runs")
  r.add_argument("out")
  r.add_argument("samples")
  r.add_argument("reports", nargs="+")
  g = sub.add_parser("regions")
  g.add_argument("out")
  g.add_argument("samples", nargs="+")
  args = p.parse_args(argv)
  result = {"fresh": fresh, "runs": runs, "regions": regions}[args.mode](args)
  result["command"] = "python docs/learning/pattern_zero.py " + " ".join(
      sys.argv[1:] if argv is None else argv)
  with open(args.out, "w", encoding="utf-8") as fh:
    json.dump(result, fh, indent=1)
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()

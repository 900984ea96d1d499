"""``--mode=eval``: sample the cascade (or a single stage) over a test record set and score it.

  python -m tryon_jax.main --mode=eval --config=configs/base128.py --workdir=DIR \\
      --records='test/*.tfrecord' [--pairs test_pairs.txt | --unpaired] \\
      [--ckpt_base128 D --ckpt_sr256 D --ckpt_sr1024 D] [--steps ... --max_examples N]

Stages: the --ckpt_* flags, else WORKDIR's own newest checkpoint (one stage). A cascade starts at
base128; a lone super-resolution stage (or sr256 -> sr1024) starts from the ground-truth photo
downsampled by its lowres_factor, i.e. it is scored on super-resolution alone (paired only).

Settings: "paired" (each record with its own garment: the photo is the ground truth, so SSIM and
PSNR are reported, with dm-pix on [0, 1] images) or "unpaired" (--pairs naming other garments, or
--unpaired: person i wears record i+1's garment; no ground truth). FID and KID compare the
try-ons with the evaluated persons' photos on InceptionV3 pool3 features (tryon_jax.eval); they
need the Inception weights .npz and are skipped, with the reason in the results, without it.

Results: WORKDIR/eval/<name>.json (written atomically) and TensorBoard scalars eval/<name>/<metric>
(plus a person | garment | try-on grid) under WORKDIR/tb, at the last stage's checkpoint step.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any

import ml_collections
import numpy as np

from tryon_jax.inference import checkpoints
from tryon_jax.inference import inputs
from tryon_jax.inference import options as options_lib
from tryon_jax.inference import tryon as tryon_lib

def pairs_to_score(records: inputs.RecordSet, opts: options_lib.EvalOptions
                   ) -> tuple[list[inputs.PairRef], str]:
  """The pairs to evaluate and the setting ("paired" | "unpaired")."""
  if opts.pairs and opts.unpaired:
    raise options_lib.OptionError("give --pairs or --unpaired, not both")
  if opts.pairs:
    refs = records.from_pairs_file(opts.pairs)
  elif opts.unpaired:
    refs = records.shifted()
  else:
    refs = records.paired()
  if opts.max_examples is not None:
    if opts.max_examples < 1:
      raise options_lib.OptionError(f"--max_examples={opts.max_examples} must be >= 1")
    refs = refs[:opts.max_examples]
  return refs, "paired" if all(r.paired for r in refs) else "unpaired"


def ssim_psnr(generated: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-image SSIM and PSNR (tryon_jax.eval.metrics: dm-pix) of uint8 [N, R, R, 3] images."""
  from tryon_jax.eval import metrics  # pylint: disable=g-import-not-at-top
  return metrics.ssim(generated, target), metrics.psnr(generated, target)


class InceptionScorer:
  """Collects InceptionV3 pool3 features of try-ons and of real photos, then FID and KID
  (tryon_jax.eval.fid). Without the weights file, ``skipped`` says why and how to make it, and
  every call is a no-op.

  weights: the converted .npz; "" = tryon_jax.eval's default ($TRYON_INCEPTION_NPZ or
  ~/.cache/tryon_jax/inception_fid.npz). A file that exists but does not load is an error.
  """

  def __init__(self, weights: str):
    from tryon_jax.eval import fid as fid_lib  # pylint: disable=g-import-not-at-top
    from tryon_jax.eval import inception  # pylint: disable=g-import-not-at-top
    self._fid = fid_lib
    self.skipped: str | None = None
    self._fake: list[np.ndarray] = []
    self._real: list[np.ndarray] = []
    path = os.path.abspath(os.path.expanduser(weights or inception.default_weights_path()))
    if not os.path.isfile(path):
      self.skipped = (f"no InceptionV3 weights at {path}: {inception.how_to_create(path)} "
                      "(or pass --inception_weights=PATH.npz)")
      return
    try:
      self._features = fid_lib.load_feature_fn(path)
    except inception.WeightsError as e:
      raise options_lib.OptionError(f"--inception_weights: {e}") from None

  def add(self, generated: np.ndarray, real: np.ndarray) -> None:
    """uint8 [N, R, R, 3] try-ons and real photos."""
    if self.skipped is None:
      self._fake.append(np.asarray(self._features(generated), np.float32))
      self._real.append(np.asarray(self._features(real), np.float32))

  def results(self) -> dict[str, float]:
    if self.skipped is not None:
      return {}
    fake, real = np.concatenate(self._fake), np.concatenate(self._real)
    if len(fake) < 2:
      self.skipped = f"{len(fake)} example(s): FID/KID need at least 2"
      return {}
    fid = self._fid.fid_from_stats(self._fid.compute_stats(fake, self._features),
                                   self._fid.compute_stats(real, self._features))
    kid = self._fid.kid_from_features(fake, real)
    return {"fid": float(fid), "kid": float(kid.mean), "kid_std": float(kid.std)}


def _stage_plan(workdir: str, opts: options_lib.EvalOptions
                ) -> tuple[list[checkpoints.StageCheckpoint], int | None]:
  """The stages to run and, for a cascade that starts at an SR stage, the low-res input side."""
  ckpts = checkpoints.resolve_all(opts.ckpt)
  if not ckpts:
    ckpts = [checkpoints.resolve(workdir, "--workdir")]
  first = ckpts[0].config
  if "lowres" not in tuple(first.model.cond_images):
    return ckpts, None
  target = int(first.data.resolution)  # the SR stage's full output size (1024 for sr1024)
  return ckpts, target // int(first.model.lowres_factor)


def _write_json(path: str, obj: dict) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = tryon_lib.temp_path(path)
  try:
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump(obj, f, indent=2)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _grid(examples: list[dict], tryons: np.ndarray, rows: int) -> np.ndarray:
  """person | garment | try-on, one row per example: uint8 [rows * R, 3 R, 3]."""
  rows = min(rows, len(examples))
  cells = [[tryon_lib.to_uint8(e["person"]), tryon_lib.to_uint8(e["garment"]), t]
           for e, t in zip(examples[:rows], tryons[:rows])]
  return np.concatenate([np.concatenate(r, axis=1) for r in cells], axis=0)


def evaluate(config: ml_collections.ConfigDict, workdir: str,
             opts: options_lib.EvalOptions) -> dict[str, Any]:
  """Samples and scores; writes WORKDIR/eval/<name>.json and TensorBoard; returns the results."""
  start_time = time.time()
  if not opts.records:
    raise options_lib.OptionError("--records GLOB is required: the test records to evaluate on")
  if opts.name is not None and (not opts.name or os.sep in opts.name or opts.name[0] == "."):
    raise options_lib.OptionError(f"--eval_name={opts.name!r}: want a plain file name")
  batch_size = int(tryon_lib.inference_setting(config, "batch_size", opts.batch_size))
  seed = int(tryon_lib.inference_setting(config, "seed", opts.seed))
  weights = opts.inception_weights
  if weights is None:
    weights = str(config.get("inference", {}).get("inception_weights", ""))
  grid_rows = int(config.get("inference", {}).get("eval_grid_rows", 4))
  ckpts, lowres_size = _stage_plan(workdir, opts)
  opts.check(len(ckpts))
  records = inputs.RecordSet(opts.records)
  refs, setting = pairs_to_score(records, opts)
  if lowres_size is not None and setting != "paired":
    raise options_lib.OptionError(f"{ckpts[0].flag}: a cascade that starts at the "
                                  f"{ckpts[0].stage!r} stage upsamples the ground truth, so it "
                                  "can only be evaluated paired")
  resolution = tryon_lib.stage_resolutions(ckpts, lowres_size)[-1]
  scorer = InceptionScorer(weights)
  if scorer.skipped:
    print(f"WARNING: FID/KID skipped: {scorer.skipped}", file=sys.stderr)

  cascade = checkpoints.build_cascade(ckpts, samplers=opts.samplers, steps=opts.steps,
                                      guidance_weights=opts.guidance_weights)
  ssim, psnr = [], []
  grid = None
  for chunk, outputs in tryon_lib.sample_batches(
      cascade, len(refs), lambda i: records.example(refs[i], resolution), batch_size, seed,
      "eval", lowres_size=lowres_size):
    generated = outputs[cascade.stages[-1].name]
    real = np.stack([tryon_lib.to_uint8(e["person"]) for e in chunk])
    if setting == "paired":
      s, p = ssim_psnr(generated, real)
      ssim.extend(s.tolist())
      psnr.extend(p.tolist())
    scorer.add(generated, real)
    if grid is None:
      grid = _grid(chunk, generated, grid_rows)

  metrics: dict[str, float] = {}
  skipped: dict[str, str] = {}
  # PSNR is +inf for an exact match: the mean is over the finite values, and the count of exact
  # matches is reported beside it (strict JSON has no infinity).
  finite = [v for v in psnr if math.isfinite(v)]
  exact_matches = len(psnr) - len(finite)
  if ssim:
    metrics["ssim"] = float(np.mean(ssim))
    if finite:
      metrics["psnr"] = float(np.mean(finite))
    else:
      skipped["psnr"] = "every try-on equals its ground truth exactly (PSNR = +inf)"
  metrics.update(scorer.results())
  if scorer.skipped:
    skipped.update(fid=scorer.skipped, kid=scorer.skipped)
  if setting != "paired":
    skipped.update(ssim="unpaired: no ground truth", psnr="unpaired: no ground truth")
  step = ckpts[-1].step
  name = opts.name or f"{'+'.join(c.stage for c in ckpts)}_step{step}_{setting}"
  results = {
      "name": name, "setting": setting, "records": opts.records, "pairs": opts.pairs,
      "num_examples": len(refs), "resolution": resolution, "metrics": metrics,
      "psnr_exact_matches": exact_matches,
      "skipped": skipped, "seed": seed, "batch_size": batch_size,
      "stages": [{"stage": s.name, "checkpoint": c.step_dir, "step": c.step,
                  "sampler": s.config.diffusion.sampler,
                  "steps": int(s.config.diffusion.sample_steps),
                  "guidance_weight": float(s.config.diffusion.guidance_weight)}
                 for s, c in zip(cascade.stages, ckpts)],
      "seconds": round(time.time() - start_time, 2),
  }
  path = os.path.join(workdir, "eval", f"{name}.json")
  _write_json(path, results)
  results["path"] = path
  _write_tensorboard(workdir, name, step, metrics, grid)
  return results


def _write_tensorboard(workdir: str, name: str, step: int, metrics: dict[str, float],
                       grid: np.ndarray | None) -> None:
  import tensorboardX  # pylint: disable=g-import-not-at-top
  writer = tensorboardX.SummaryWriter(logdir=os.path.join(workdir, "tb"))
  try:
    for metric, value in metrics.items():
      writer.add_scalar(f"eval/{name}/{metric}", value, step)
    if grid is not None:
      writer.add_image(f"eval/{name}/person_garment_tryon", grid, step, dataformats="HWC")
  finally:
    writer.close()


def run(config: ml_collections.ConfigDict, workdir: str,
        opts: options_lib.EvalOptions | None = None) -> int:
  """The --mode=eval runner (options from the flags unless given): prints the results as one
  JSON line; one-line error and exit status 1 for bad input."""
  try:
    opts = opts if opts is not None else options_lib.eval_from_flags()
    results = evaluate(config, workdir, opts)
  except (*tryon_lib.ERRORS, OSError) as e:  # OSError: e.g. WORKDIR/eval not writable
    print(f"ERROR: {e}", file=sys.stderr)
    return 1
  print(json.dumps({"eval": results["path"], **results["metrics"]}))
  return 0

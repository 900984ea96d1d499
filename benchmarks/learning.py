"""Evidence that it learns: implicit warping on the synthetic task, Parallel-UNet vs concatenation.

    python -m benchmarks.learning --workdir=/tmp/tryon_learning --out=docs/learning

Trains the demo-size Parallel-UNet and the same-size ``concat`` variant (the paper's first
ablation: no garment UNet, I_c concatenated to z_t, no cross-attention) with configs/learning.py
(configs/demo.py's networks, short-budget training settings) on the same synthetic paired set, for
the same number of steps, seed and batch. Then samples held-out pairs
(a test split drawn with another seed: new people, garments and poses) with the EMA parameters and
measures, on the garment region of the target (its upper-clothes label, cropped like the record):

  * psnr_garment: PSNR over garment pixels (images in [0, 1]);
  * ssim: SSIM of the whole image (dm-pix, 7x7 Gaussian window: the images are 32 px);
  * ssim_garment: the SSIM map averaged over garment pixels;
  * hist_l1_garment: L1 distance of the 8x8x8-bin colour histograms of the target's and the
    output's garment pixels (0 = same colours, 2 = disjoint): texture/colour fidelity;
  * detail_corr_garment: correlation of the output's and the target's garment pixels, each less
    its own garment-mean colour (Pearson over pixels and channels): where the pattern and shading
    are, not which colours: 1 for the target's pattern in place (at any contrast), 0 for a flat
    garment, about 0 for a pattern out of place. The cloth shading and the outline count as
    detail too: the flat twin below scores 0.5-0.6 with no pattern at all;
  * pattern_corr_garment: the partial correlation of the output's and the target's garment
    pixels given the flat twin, the target rendered again with its garment's pattern and prints
    left out (synthetic.generate's flat_garments; same person, pose, outline and shading): each
    is first fitted by an affine function of the twin's colour (least squares, per channel), and
    the residuals are correlated. Only the pattern counts: 1 for the pattern in place, 0 for any
    garment made of the twin's shading and a colour (the twin itself, the mean colour);
  * pattern_rms_garment: the RMS of the output's residual above ([0, 1] pixel units): how much
    contrast the twin's colour does not explain, in place or not: the pattern, and noise or a
    misplaced outline too (the ``target`` reference row has the target's own). Pattern corr.
    near 0 at an RMS near the target's: something drawn, not the pattern in place;
  * fid, kid, kid_std: FID and KID (x1000) of the whole try-ons against the targets
    (tryon_jax.eval, InceptionV3 pool3). Over only ``--num_test`` images FID is biased upward, so
    only variants scored on the same pairs compare; KID is unbiased. They need the converted
    Inception weights (``--inception_weights``, see tryon_jax.eval.convert_inception); without
    them ``inception_skipped`` says why.
Reference rows: ``target`` scores the target itself (pattern_rms_garment: the targets' own
pattern contrast); ``copy_garment_input`` scores I_c itself (the garment in its *other* pose)
against the target: a model that did not warp would score about that. ``flat_twin`` (the right
colour, shading and outline, no pattern) and ``mean_colour`` (the target's garment pixels replaced
by their mean colour) are what a model that moved the garment but not its pattern could reach.
``flat_twin_soft`` is the flat twin blurred by SOFT_TWIN_SIGMA: pattern-free, but with its outline
and shading off the twin's. Such outputs score below 0 on pattern_corr_garment (-0.06 on the study's
held-out pairs; docs/learning/pattern_zero.py), so 0 is not "no pattern" for them.
``other_garment`` (per variant) scores the same network's try-ons, with the same sampling noise,
given the previous pair's I_c instead of the pair's own (other_garments): whatever pattern it draws
cannot be the target's in place, so its pattern_corr_garment is that network's zero, and
``own_minus_other_garment`` (per pair, mean and standard error) is what the right garment adds.
``garment_reliance`` asks whether the model reads I_c at all: the garment-region error of its x0
estimate with the pair's own garment vs another pair's, at noise levels RELIANCE_LEVELS (0 dB =
I_c ignored). ``--eval_split=train`` scores the first training pairs instead: the gap to the
held-out scores says how much a model has fitted its training set rather than learned the task.
``--same_pose`` trains and scores the same-pose control: the same targets, each I_c showing the
garment in the target's own pose. I_c is still cut around the garment (the converter's garment
crop), so the garment must still be scaled and moved onto the person, but not re-posed: how much
of a score gap is the pose change.
``--plant_place_attention SCALE`` (parallel variant, with model.cross_attention_position=fourier)
starts training with every cross-attention's position projections set so that a person token
attends to the garment token at its own grid place (plant_place_attention): the place-reading that
the trained networks never found, given at step 0, to ask whether the network then uses it.
``--noise_garments F`` gives a share F of the training pairs a noise garment instead of their
patterned one (synthetic_garment.noise_garment: a random colour per cell over the cloth, the same
in I_c and in the target); the held-out pairs keep their patterns. The copier study
(benchmarks.learning_copy_pairs ``--content_fraction``) found the place-reading on the study's
images only with such records among them. Scoring a set with noise garments (``--eval_split
train``), ``eval_noise_garment`` says which scored pairs wear one.
A run trained past ``--steps`` is scored at its checkpoint at ``--steps`` (train_seconds null), so
an earlier step of a run, even one still training, can be sampled in its own workdir. A run
resumed after its process was stopped reports ``timed_steps`` below ``train_steps``: the stopped
process never wrote its seconds, and ``seconds_per_step`` is over the steps timed.
``eval_pose_shift`` is how far each scored pair's garment has to move (upper-body keypoints, I_c's
pose to the target's), and the ``*_vs_pose_shift`` entries say whether a score, or parallel -
concat, changes with it: the paper puts cross-attention's advantage in the pairs that need warping.

Writes OUT/results.json (metrics per variant, wall time, steps, loss curves), OUT/grid.png (rows:
the scored pairs; columns: I_a, I_c, target, parallel, concat), OUT/loss.png and OUT/samples.npz
(the scored inputs, targets, flat twins, garment masks and outputs).
"""

from __future__ import annotations

import argparse
import ast
import glob
import json
import os
import sys
import time
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

VARIANTS = ("parallel", "concat")
HIST_BINS = 8  # per colour channel
SSIM_WINDOW = 7  # dm-pix default (11) is a third of a 32-px image
SPLIT_SEED_OFFSET = {"train": 0, "test": 10_000}  # held-out pairs: other people, garments, poses
PATTERN_RESIDUAL_FLOOR = 1e-5  # [0, 1] pixel units: float32 rounding, far below 8-bit steps
SOFT_TWIN_SIGMA = 1.0  # px of the record: moves the twin's outline and shading by about a pixel
GARMENT_KEYS = ("garment", "garment_pose", "garment_pose_mask")  # what I_c brings to a pair
RELIANCE_LEVELS = (0.5, 0.8)  # noise levels where x_t hides most of the garment: I_c must tell it
# The keypoints an upper garment follows: how far they move from I_c's pose to the target's is how
# much warping a pair asks for (pose_shift).
UPPER_BODY_KEYPOINTS = ("neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow",
                        "l_wrist", "r_hip", "l_hip")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--workdir", required=True, help="data and the two training runs go here")
  p.add_argument("--out", default="docs/learning",
                 help="results.json, grid.png, loss.png, samples.npz")
  p.add_argument("--steps", type=int, default=None,
                 help="train steps per variant (default: configs/learning.py's train.num_steps)")
  p.add_argument("--num_train", type=int, default=1024, help="synthetic training pairs")
  p.add_argument("--num_test", type=int, default=32,
                 help="held-out synthetic pairs; also the number of pairs sampled and scored")
  p.add_argument("--eval_split", choices=("test", "train"), default="test",
                 help="score held-out pairs, or the first training pairs (the generalisation gap)")
  p.add_argument("--inception_weights", default="",
                 help="InceptionV3 .npz for FID/KID (default: tryon_jax.eval's default path)")
  p.add_argument("--synthetic_resolution", type=int, default=128,
                 help="render size of the synthetic photos (records are cut from them)")
  p.add_argument("--pattern_scale", type=float, default=1.0,
                 help="garment pattern period and print tile, times the generator's default: at 1 "
                      "the held-out stripe, check and dot periods are 0.56-1.72 px of the 32 px "
                      "records, below their 2 px Nyquist limit (docs/learning/pattern_reference)")
  p.add_argument("--same_pose", action="store_true",
                 help="the same-pose control: every I_c shows its garment in the target's own pose "
                      "(synthetic.generate's same_pose; the same target images)")
  p.add_argument("--noise_garments", type=float, default=0.0, metavar="F",
                 help="share of the training pairs whose garment wears noise instead of its "
                      "pattern (the held-out pairs never do)")
  p.add_argument("--plant_place_attention", type=float, default=0.0, metavar="SCALE",
                 help="start the parallel variant's cross-attention reading the garment token at "
                      "each person token's own place (plant_place_attention; 0: off)")
  p.add_argument("--sample_steps", type=int, default=50, help="DDPM steps for the held-out samples")
  p.add_argument("--grid_rows", type=int, default=8)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--variants", default=",".join(VARIANTS))
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="config override for both variants, e.g. model.channels=(16,32)")
  args = p.parse_args(argv)
  if args.steps is None:
    from configs import learning  # pylint: disable=g-import-not-at-top
    args.steps = int(learning.get_config().train.num_steps)
  return args


def make_config(variant: str, args: argparse.Namespace, train_glob: str):
  from configs import learning  # pylint: disable=g-import-not-at-top
  config = learning.get_config(variant)
  config.seed = args.seed
  config.data.path = train_glob
  steps = args.steps
  config.train.num_steps = steps
  config.train.checkpoint_every_steps = steps
  config.train.sample_every_steps = 0
  config.train.log_every_steps = max(1, min(config.train.log_every_steps, steps // 10 or 1))
  overrides = {}
  for item in args.set:
    key, sep, value = item.partition("=")
    if not sep:
      raise SystemExit(f"--set {item!r}: expected KEY=VALUE")
    try:
      overrides[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      overrides[key] = value  # a plain string, e.g. model.dtype=bfloat16
  config.update_from_flattened_dict(overrides)
  return config


def prepare_data(args: argparse.Namespace) -> dict[str, tuple[str, str]]:
  """Synthetic train and held-out test sets, and the flat twin of the --eval_split set, whose first
  --num_test pairs are scored -> {"train" | "test" | f"{eval_split}_flat": (records glob, raw
  root)}."""
  from data_pipelines import synthetic, viton_hd  # pylint: disable=g-import-not-at-top
  data = os.path.join(args.workdir, "data")
  out = {}
  # The flat twins are made for as many pairs as their split has, so that their records shard
  # like the split's and the first --num_test read are the same pairs (the converter writes the
  # pairs round-robin into its shards, read one after another: ids 0, 4, 8, ... with four).
  split_size = {"train": args.num_train, "test": args.num_test}
  for split, flat in (("train", False), ("test", False), (args.eval_split, True)):
    num = split_size[split]
    name = split + ("_flat" if flat else "")
    raw = os.path.join(data, f"raw_{name}")
    records = os.path.join(data, f"records_{name}")
    noise = args.noise_garments if name == "train" else 0.0
    _check_made_with(raw, split, args, noise)
    if not glob.glob(os.path.join(records, "*.tfrecord")):
      synthetic.generate(raw, num, resolution=args.synthetic_resolution,
                         seed=args.seed + SPLIT_SEED_OFFSET[split], split=split,
                         pattern_scale=args.pattern_scale, flat_garments=flat,
                         same_pose=args.same_pose, noise_garments=noise)
      summary = viton_hd.convert(raw, split, records, resolution=args.synthetic_resolution,
                                 progress=False)
      print(json.dumps({"event": "data", "split": name, "written": summary["written"],
                        "skipped": summary["skipped"]}), flush=True)
    out[name] = (os.path.join(records, "*.tfrecord"), raw)
  return out


def eval_noise_garment(raw: str, split: str, pair_ids: Sequence[str]) -> list[bool] | None:
  """Per scored pair, whether it wears a noise garment in the set at ``raw`` (ids of
  data_pipelines.synthetic's pairs); None for a set made without noise."""
  from data_pipelines import synthetic  # pylint: disable=g-import-not-at-top
  from tryon_jax.data import synthetic_render  # pylint: disable=g-import-not-at-top
  made = synthetic.read_settings(raw, split)
  if not made or not made["noise_garments"]:
    return None
  return [synthetic_render.wears_noise_garment(synthetic.example_index(pair_id), seed=made["seed"],
                                               split=split, noise_garments=made["noise_garments"])
          for pair_id in pair_ids]


def _check_made_with(raw: str, split: str, args: argparse.Namespace,
                     noise_garments: float) -> None:
  """Refuses a workdir whose synthetic set was made with another --pattern_scale, --same_pose or
  share of noise garments (``noise_garments``: --noise_garments for the training set, else 0),
  checked here, as synthetic.generate is not called once the records exist."""
  from data_pipelines import synthetic  # pylint: disable=g-import-not-at-top
  made = synthetic.read_settings(raw, split)
  asked = {"pattern_scale": args.pattern_scale, "same_pose": args.same_pose,
           "noise_garments": noise_garments}
  for key, value in asked.items():
    if made is not None and made[key] != value:
      raise SystemExit(f"--{key} {value}: {synthetic.settings_path(raw, split)} was "
                       f"made with {made[key]}; use another --workdir")


def records_by_id(records_glob: str) -> dict:
  """{record id: schema.TryOnRecord} of every record in the TFRecord files of ``records_glob``."""
  from tryon_jax.data import schema, tfrecord  # pylint: disable=g-import-not-at-top
  by_id = {}
  for path in sorted(glob.glob(records_glob)):
    for _, raw in tfrecord.read_tfrecord(path):
      rec = schema.deserialize(raw)
      by_id[rec.id] = rec
  return by_id


def garment_masks(records_glob: str, raw_root: str, split: str, ids: Sequence[str],
                  resolution: int) -> np.ndarray:
  """Target garment masks [N, R, R] bool, in the order of ``ids``: the target's upper-clothes
  labels from the raw parse map, cut and resized with the record's own square crop."""
  from data_pipelines import _convert  # pylint: disable=g-import-not-at-top
  from tryon_jax.data import labels, preprocess  # pylint: disable=g-import-not-at-top
  by_id = records_by_id(records_glob)
  masks = []
  for rid in ids:
    rec = by_id[rid]
    parse = _convert.read_label_map(
        os.path.join(raw_root, split, "image-parse-v3", _convert.stem(rec.person_id) + ".png"))
    garment = np.isin(parse, sorted(labels.VITON_HD.garment)).astype(np.uint8) * 255
    crop = tuple(int(round(v)) for v in rec.person_crop)
    cut = preprocess.crop_resize(garment[..., None].repeat(3, -1), crop, resolution, nearest=True,
                                 pad_mode="constant", pad_value=0)
    masks.append(cut[..., 0] > 127)
  return np.stack(masks)


def plant_place_attention(scale: float):
  """An init_fn for tryon_jax.train.loop.train: in every cross-attention, the query and key position
  projections (model.cross_attention_position=fourier or pose_*) become ``scale`` times the
  identity on each head's first grid_fourier_size channels, zero elsewhere, in the model and its
  EMA. A head's position logit is then scale^2 F(p).F(p') / sqrt(head_dim), F the grid's Fourier
  features: largest where the garment token p' is at the person token's own place p (at 32 tokens,
  3.4 scale^2 / sqrt(head_dim) above a neighbour). In the same-pose control that place is I_c's
  garment near, not exactly at, what the token shows: the crop still scales and moves it. With
  pose_affine the person token's code is that of the place its pose map sends it to, so the planted
  read is the torso's affine warp instead of the own place (pose_parts: its body part's map)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from tryon_jax.models import layers  # pylint: disable=g-import-not-at-top

  def planted(kernel: jax.Array, num_heads: int) -> jax.Array:
    features, channels = kernel.shape
    head_dim = channels // num_heads
    if head_dim < features:
      raise SystemExit(f"--plant_place_attention: head_dim {head_dim} < {features} position "
                       "features; raise model.head_dim")
    eye = jnp.eye(features, head_dim, dtype=kernel.dtype)
    return jax.device_put(scale * jnp.tile(eye, (1, num_heads)), kernel.sharding)

  def init_fn(spec, state):
    train_state = nnx.merge(spec.graphdef, state, copy=True)  # leaves ``state`` as it was
    attention = [m for _, m in nnx.iter_modules(train_state.model)
                 if isinstance(m, layers.CrossAttention)]
    if not attention or any(m.position_q is None for m in attention):
      raise SystemExit("--plant_place_attention needs the parallel variant with "
                       "model.cross_attention_position=fourier, pose_affine or pose_parts")
    for m in attention:
      for projection in (m.position_q, m.position_k):
        projection.kernel[...] = planted(projection.kernel[...], m.num_heads)
    train_state.ema = nnx.data(jax.tree.map(jnp.copy, nnx.state(train_state.model, nnx.Param)))
    return nnx.state(train_state)

  return init_fn


def train_variant(config, workdir: str, init_fn=None) -> tuple[float, int] | None:
  """Trains one variant to config.train.num_steps (resuming a partial run); returns the wall
  seconds the training took and the number of steps they cover. A process stopped before it
  finished leaves its seconds unrecorded, so a run resumed from its checkpoint is timed over fewer
  steps than it has. Both are kept in WORKDIR/train_seconds.json, and a complete run is not
  trained again, so variants trained by separate processes (one per core: ``--variants parallel``
  and ``--variants concat``) are reported by a later run over both. A run already past
  num_steps (trained on, or still training) is not touched: its checkpoint at num_steps is the one
  evaluated, and the seconds are None (only the last finished step's time is kept). ``init_fn``
  goes to loop.train, which calls it only when the run starts from scratch
  (plant_place_attention)."""
  from tryon_jax.train import loop  # pylint: disable=g-import-not-at-top
  timing = os.path.join(workdir, "train_seconds.json")
  done = {"train_seconds": 0.0, "step": 0}
  if os.path.exists(timing):
    with open(timing, encoding="utf-8") as f:
      done = json.load(f)
  timed_steps = int(done.get("timed_steps", done["step"]))  # files from before it cover "step"
  if done["step"] == config.train.num_steps:
    return float(done["train_seconds"]), timed_steps
  saved = loop.saved_steps(workdir)
  if saved and saved[-1] > config.train.num_steps:
    if config.train.num_steps not in saved:
      raise FileNotFoundError(
          f"{workdir}: the run is past step {config.train.num_steps} and kept no checkpoint there "
          f"(it holds steps {saved}): pass --steps one of them")
    return None
  start = time.perf_counter()
  result = loop.train(config, workdir, init_fn=init_fn)
  if result.step != config.train.num_steps:
    raise RuntimeError(f"{workdir}: training stopped at step {result.step}")
  seconds = float(done["train_seconds"]) + time.perf_counter() - start
  timed_steps += result.step - result.start_step
  with open(timing, "w", encoding="utf-8") as f:
    json.dump({"train_seconds": seconds, "step": result.step, "timed_steps": timed_steps}, f)
  return seconds, timed_steps


def eval_batch(config, data: dict[str, tuple[str, str]], split: str,
               num: int) -> tuple[dict, np.ndarray]:
  """The first ``num`` pairs of ``split`` (a key of prepare_data's output: "test_flat" is the flat
  twin of "test") as one batch, and their target garment masks [num, R, R] bool (see
  garment_masks)."""
  from tryon_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  records_glob, raw_root = data[split]
  batch = next(iter(pipeline.make_eval_dataset(config, records_glob, num)))
  valid = np.asarray(batch["valid"]) > 0
  batch = {k: np.asarray(v)[valid] for k, v in batch.items()}
  masks = garment_masks(records_glob, raw_root, split.removesuffix("_flat"), batch_ids(batch),
                        int(config.data.resolution))
  return batch, masks


def flat_twin_targets(config, data: dict[str, tuple[str, str]], split: str, batch: dict,
                      masks: np.ndarray) -> np.ndarray:
  """The flat twins [N, R, R, 3] in [-1, 1] of ``batch``'s targets (eval_batch of ``split``),
  after checking that they are the same pairs with the same garment masks."""
  twin, twin_masks = eval_batch(config, data, split + "_flat", len(masks))
  if batch_ids(twin) != batch_ids(batch) or not np.array_equal(twin_masks, masks):
    raise RuntimeError(f"{data[split + '_flat'][0]}: the flat twins are not the scored pairs of "
                       f"{split} (other ids or garment masks); delete the *_flat directories")
  return twin["person"]


def mean_colour_targets(target: np.ndarray, masks: np.ndarray) -> np.ndarray:
  """target [N, R, R, 3] with each garment region [N, R, R] replaced by its mean colour."""
  out = np.array(target, copy=True)
  for img, m in zip(out, masks):
    img[m] = img[m].mean(0)
  return out


def soft_flat_twin(twin: np.ndarray, sigma: float = SOFT_TWIN_SIGMA) -> np.ndarray:
  """twin [N, R, R, 3] blurred over each image's rows and columns by a Gaussian of sigma pixels
  (image edges reflected): no pattern, its garment's outline mixed with the surroundings and its
  shading smoothed."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top
  return ndimage.gaussian_filter(np.asarray(twin), (0, sigma, sigma, 0)).astype(twin.dtype)


def batch_ids(batch: dict) -> list[str]:
  return [i.decode() if isinstance(i, bytes) else str(i) for i in batch["id"]]


def model_inputs(batch: dict) -> dict:
  """What the network is given of an eval batch: everything but the ids, the padding flags and
  the target person image."""
  return {k: v for k, v in batch.items() if k not in ("id", "valid", "person")}


def other_garments(batch: dict) -> dict:
  """batch with each pair's garment I_c, and its pose, replaced by the previous pair's (rolled by
  one along the batch: pair 0 gets the last pair's); the person, the target and everything else
  stay."""
  other = dict(batch)
  for k in GARMENT_KEYS:
    other[k] = np.roll(batch[k], 1, axis=0)
  return other


def sample_variant(config, spec, state, batch: dict, sample_steps: int, seed: int) -> np.ndarray:
  """Try-ons [N, R, R, 3] in [-1, 1] from the EMA parameters of ``state`` (a restored run)."""
  import jax  # pylint: disable=g-import-not-at-top
  from tryon_jax.diffusion import conditioning, samplers  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import state as state_lib  # pylint: disable=g-import-not-at-top
  mesh = spec.mesh
  inputs = model_inputs(batch)
  n, r = batch["person"].shape[:2]

  @jax.jit
  def run(state, inputs, key):
    model = state_lib.ema_model(spec, state)
    key_cond, key_sample = jax.random.split(key)
    cond = conditioning.inference_cond(inputs, key_cond, config)
    return samplers.sample(lambda x, t, c: model(x, t, c), cond, key_sample, config,
                           shape=(n, r, r, 3), sampler="ddpm", steps=sample_steps)

  with jax.set_mesh(mesh):
    return np.asarray(run(state, inputs, jax.random.key(seed)))


def garment_reliance(config, spec, state, batch: dict, masks: np.ndarray, seed: int,
                     levels: Sequence[float] = RELIANCE_LEVELS) -> dict[str, dict[str, float]]:
  """How much the model takes the garment from I_c: at each noise level t, the garment-region MSE
  of its x0 estimate from x_t given the pair's own garment, and given another pair's garment (and
  garment pose; the batch rolled by one). A model that ignores I_c scores equal errors, 0 dB.

  Returns {f"t={t}": {"mse_own", "mse_other", "reliance_db" = 10 log10(mse_other / mse_own),
  "logsnr" (the level's log-SNR: schedules with a logsnr_shift put another noise level at t)}};
  MSE in [0, 1] pixel units over garment pixels, pooled over the batch.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from tryon_jax.diffusion import conditioning, prediction, schedules  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import state as state_lib  # pylint: disable=g-import-not-at-top
  schedule = schedules.make_schedule(config.diffusion)
  inputs = model_inputs(batch)
  other = other_garments(inputs)
  x0 = np.asarray(batch["person"], np.float32)

  @jax.jit
  def x0_error(state, inputs, t, key):
    model = state_lib.ema_model(spec, state)
    key_cond, key_noise = jax.random.split(key)
    cond = conditioning.inference_cond(inputs, key_cond, config)
    noise = jax.random.normal(key_noise, x0.shape)
    tb = jnp.full((x0.shape[0],), t)
    x_t = schedule.add_noise(x0, noise, tb)
    alpha, sigma = (v[:, None, None, None] for v in schedule.alpha_sigma(tb))
    est, _ = prediction.to_x0_eps(model(x_t, tb, cond), x_t, alpha, sigma,
                                  config.diffusion.prediction)
    return ((jnp.clip(est, -1, 1) - x0) / 2) ** 2  # [0, 1] pixel units

  m = masks[..., None].astype(np.float32)
  out = {}
  with jax.set_mesh(spec.mesh):
    for t in levels:
      key = jax.random.key(seed)  # the same noise for own and other: a paired comparison
      own = float((np.asarray(x0_error(state, inputs, t, key)) * m).sum() / (3 * m.sum()))
      alt = float((np.asarray(x0_error(state, other, t, key)) * m).sum() / (3 * m.sum()))
      out[f"t={t}"] = {"mse_own": own, "mse_other": alt, "logsnr": float(schedule.logsnr(t)),
                       "reliance_db": float(10 * np.log10(alt / max(own, 1e-12)))}
  return out


def garment_metrics(pred: np.ndarray, target: np.ndarray, masks: np.ndarray,
                    flat_twin: np.ndarray | None = None) -> dict[str, float]:
  """Mean and std over examples of the garment-region metrics (see module docstring) of pred
  against target [N, R, R, 3] in [-1, 1] over masks [N, R, R]; pattern_corr_garment and
  pattern_rms_garment only if the targets' flat twins [N, R, R, 3] are given."""
  import dm_pix  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  a = (np.clip(pred, -1, 1) + 1) / 2
  b = (np.clip(target, -1, 1) + 1) / 2
  m = masks.astype(np.float32)
  count = np.maximum(m.sum(axis=(1, 2)), 1)
  mse = ((a - b) ** 2).mean(-1)
  psnr = -10 * np.log10(np.maximum((mse * m).sum(axis=(1, 2)) / count, 1e-10))
  ssim_map = np.asarray(dm_pix.ssim(jnp.asarray(a), jnp.asarray(b), filter_size=SSIM_WINDOW,
                                    return_map=True)).mean(-1)
  trim = (SSIM_WINDOW - 1) // 2  # the map covers the 'valid' window centres
  m_in = m[:, trim:-trim, trim:-trim]
  ssim_garment = (ssim_map * m_in).sum(axis=(1, 2)) / np.maximum(m_in.sum(axis=(1, 2)), 1)
  ssim = ssim_map.mean(axis=(1, 2))
  detail = [detail_correlation(ai[mi], bi[mi]) for ai, bi, mi in zip(a, b, masks)]
  hist = []
  for ai, bi, mi in zip(a, b, masks):
    ha = np.histogramdd(ai[mi], bins=HIST_BINS, range=[(0, 1)] * 3)[0].ravel()
    hb = np.histogramdd(bi[mi], bins=HIST_BINS, range=[(0, 1)] * 3)[0].ravel()
    hist.append(np.abs(ha / max(ha.sum(), 1) - hb / max(hb.sum(), 1)).sum())
  scores = [("psnr_garment", psnr), ("ssim", ssim), ("ssim_garment", ssim_garment),
            ("hist_l1_garment", np.asarray(hist)), ("detail_corr_garment", np.asarray(detail))]
  if flat_twin is not None:
    c = (np.clip(flat_twin, -1, 1) + 1) / 2
    scores.append(("pattern_corr_garment", np.asarray(
        [pattern_correlation(ai[mi], bi[mi], ci[mi]) for ai, bi, ci, mi in zip(a, b, c, masks)])))
    scores.append(("pattern_rms_garment", np.asarray(
        [pattern_rms(ai[mi], ci[mi]) for ai, ci, mi in zip(a, c, masks)])))
  out = {"per_example": {}}
  for name, values in scores:
    out[name] = float(np.mean(values))
    out[name + "_std"] = float(np.std(values))
    out["per_example"][name] = [float(v) for v in values]
  return out


def detail_correlation(pred: np.ndarray, target: np.ndarray) -> float:
  """Pearson correlation of pred and target pixels [P, 3], each less its mean colour; 0 if either
  is flat (no detail to place)."""
  a, b = pred - pred.mean(0), target - target.mean(0)
  norm = np.sqrt((a * a).sum() * (b * b).sum())
  return float((a * b).sum() / norm) if norm > 1e-12 else 0.0


def pattern_residual(pixels: np.ndarray, flat_twin: np.ndarray) -> np.ndarray:
  """What is left of pixels [P, 3] after a least-squares fit, per channel, by an affine function
  of the flat twin's colour [P, 3] (float64): the pattern, and whatever else the twin's colour and
  shading do not explain. Any widths work ([P, C] fitted from [P, D]; learning_copy.read_bound)."""
  pixels, flat_twin = np.asarray(pixels, np.float64), np.asarray(flat_twin, np.float64)
  basis = np.concatenate([np.ones((len(flat_twin), 1)), flat_twin], axis=1)
  return pixels - basis @ np.linalg.lstsq(basis, pixels, rcond=None)[0]


def pattern_rms(pixels: np.ndarray, flat_twin: np.ndarray) -> float:
  """RMS of pattern_residual: how much contrast pixels [P, 3] carry that the flat twin's colour
  does not explain (the pattern, wherever it is, and any error)."""
  return float(np.sqrt((pattern_residual(pixels, flat_twin) ** 2).mean()))


def pattern_correlation(pred: np.ndarray, target: np.ndarray, flat_twin: np.ndarray) -> float:
  """Partial correlation of pred and target pixels [P, 3] given the flat twin's [P, 3]: Pearson
  (over pixels and channels) of their pattern_residual. 0 if either is explained by the twin
  (residual RMS below PATTERN_RESIDUAL_FLOOR)."""
  a, b = pattern_residual(pred, flat_twin), pattern_residual(target, flat_twin)
  if min(np.sqrt((a * a).mean()), np.sqrt((b * b).mean())) < PATTERN_RESIDUAL_FLOOR:
    return 0.0
  return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def per_pair_difference(a: dict, b: dict) -> dict[str, np.ndarray]:
  """Metric by metric, a - b per held-out pair [N] (per-example values from ``garment_metrics``),
  over the metrics both scored (a report from before a metric was added lacks it)."""
  return {name: np.asarray(va) - np.asarray(b["per_example"][name])
          for name, va in a["per_example"].items() if name in b["per_example"]}


def mean_and_sem(values: Sequence[float]) -> dict[str, float]:
  """{"mean", "sem"} of per-pair values [N]; the standard error is NaN for a single pair."""
  d = np.asarray(values, np.float64)
  sem = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
  return {"mean": float(d.mean()), "sem": sem}


def format_mean_and_sem(stat: dict[str, float]) -> str:
  """A mean_and_sem result as a table cell: "+0.123 ± 0.045"."""
  return f"{stat['mean']:+.3f} ± {stat['sem']:.3f}"


def paired_difference(a: dict, b: dict) -> dict[str, dict[str, float]]:
  """Metric by metric, the mean of a - b over the same held-out pairs and its standard error
  (per-example values from ``garment_metrics``): the variants met the same inputs, so the paired
  difference is what the comparison rests on, not the two spreads."""
  return {name: mean_and_sem(d) for name, d in per_pair_difference(a, b).items()}


def pose_shift(batch: dict) -> np.ndarray:
  """[N] how far each pair's garment has to move: the mean distance, in image sides, between the
  UPPER_BODY_KEYPOINTS of the target person (batch["person_pose"], [N, K, 2] in [0, 1]) and of
  the person in I_c (batch["garment_pose"]), over the keypoints present in both (the *_mask
  entries); NaN where none is (a lay-flat garment has no pose)."""
  from tryon_jax.data import labels  # pylint: disable=g-import-not-at-top
  idx = [labels.COCO18_NAMES.index(name) for name in UPPER_BODY_KEYPOINTS]
  person, garment = (np.asarray(batch[k], np.float64)[:, idx] for k in ("person_pose",
                                                                         "garment_pose"))
  both = (np.asarray(batch["person_pose_mask"])[:, idx] > 0) & (
      np.asarray(batch["garment_pose_mask"])[:, idx] > 0)
  dist = np.linalg.norm(person - garment, axis=-1)
  count = both.sum(axis=1)
  return np.where(count > 0, (dist * both).sum(axis=1) / np.maximum(count, 1), np.nan)


def split_at_median_shift(shift: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
  """keep [N] bool: the pairs with a shift (not NaN / None); large [keep.sum()] bool: those of them
  at or above the median shift."""
  shift = np.asarray(shift, np.float64)
  keep = np.isfinite(shift)
  return keep, shift[keep] >= np.median(shift[keep])


def trend_with_pose_shift(values: dict[str, Sequence[float]],
                          shift: Sequence[float]) -> dict[str, dict[str, float]]:
  """Metric by metric, does a per-pair value (a score, or a - b from per_pair_difference) change
  with the pose shift? {"spearman": rank correlation with the shift, "spearman_p": its two-sided
  p-value, both None where the values or the shifts do not vary; "small" / "large": the mean over
  the pairs below / at or above the median shift, None where there are none (every shift the
  same)}. Pairs with no shift (NaN or None) are left out.
  The paper's claim, cross-attention wins where the garment must be warped, predicts that
  parallel - concat improves (PSNR up, histogram distance down) from "small" to "large"."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  shift = np.asarray(shift, np.float64)
  keep, large = split_at_median_shift(shift)

  def mean(v):
    return float(v.mean()) if len(v) else None

  out = {}
  for name, v in values.items():
    v = np.asarray(v, np.float64)[keep]
    varies = np.ptp(v) > 0 and np.ptp(shift[keep]) > 0  # else the rank correlation is undefined
    rank = stats.spearmanr(shift[keep], v) if varies else None
    out[name] = {"spearman": None if rank is None else float(rank.statistic),
                 "spearman_p": None if rank is None else float(rank.pvalue),
                 "small": mean(v[~large]), "large": mean(v[large])}
  return out


def read_curve(workdir: str) -> list[tuple[int, float]]:
  """(step, loss) rows of WORKDIR/metrics.jsonl in step order. A run stopped between checkpoints
  and resumed logs its steps again from the checkpoint on: those rows replace the earlier ones."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if line.strip()]
  curve: list[tuple[int, float]] = []
  for r in rows:
    while curve and curve[-1][0] >= int(r["step"]):
      curve.pop()
    curve.append((int(r["step"]), float(r["loss"])))
  return curve


def to_uint8(images: np.ndarray) -> np.ndarray:
  return np.clip(np.round((np.asarray(images) + 1) * 127.5), 0, 255).astype(np.uint8)


def write_grid(path: str, columns: list[np.ndarray], rows: int, scale: int = 4) -> None:
  """columns: [N, R, R, 3] in [-1, 1] each -> one PNG, ``rows`` examples, upscaled ``scale``x."""
  grid = np.concatenate([np.concatenate(list(to_uint8(c[:rows])), axis=0) for c in columns], axis=1)
  img = Image.fromarray(grid)
  img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(path)


def write_loss_plot(path: str, curves: dict[str, list[tuple[int, float]]],
                    size: tuple[int, int] = (640, 360)) -> None:
  """A plain line plot of loss vs step per variant (PIL only)."""
  colours = {"parallel": (200, 40, 40), "concat": (40, 80, 200)}
  w, h = size
  pad = 40
  img = Image.new("RGB", size, "white")
  draw = ImageDraw.Draw(img)
  points = [p for c in curves.values() for p in c]
  if not points:
    img.save(path)
    return
  max_step = max(s for s, _ in points)
  lo, hi = min(v for _, v in points), max(v for _, v in points)
  hi = hi if hi > lo else lo + 1
  draw.rectangle([pad, pad // 2, w - pad // 2, h - pad], outline="black")
  draw.text((pad, h - pad + 5), f"step 0 .. {max_step}", fill="black")
  draw.text((2, pad // 2), f"{hi:.3f}", fill="black")
  draw.text((2, h - pad - 10), f"{lo:.3f}", fill="black")
  for i, (name, curve) in enumerate(curves.items()):
    xy = [(pad + (w - 1.5 * pad) * s / max(max_step, 1), h - pad - (h - 1.5 * pad) * (v - lo) / (hi - lo))
          for s, v in curve]
    if len(xy) > 1:
      draw.line(xy, fill=colours.get(name, (0, 0, 0)), width=2)
    draw.text((w - 140, pad // 2 + 5 + 12 * i), f"{name} loss", fill=colours.get(name, (0, 0, 0)))
  img.save(path)


def main(argv: Sequence[str] | None = None) -> dict:
  args = parse_args(argv)
  variants = [v for v in args.variants.split(",") if v]
  for v in variants:
    if v not in VARIANTS:
      raise SystemExit(f"--variants: unknown variant {v!r} (expected {VARIANTS})")
  if not 0.0 <= args.noise_garments <= 1.0:
    raise SystemExit(f"--noise_garments {args.noise_garments}: a share, in [0, 1]")
  if args.plant_place_attention and "parallel" not in variants:
    raise SystemExit("--plant_place_attention plants the parallel variant's cross-attention: "
                     f"--variants {args.variants} has none")
  os.makedirs(args.out, exist_ok=True)
  import jax  # pylint: disable=g-import-not-at-top
  from tryon_jax import models  # pylint: disable=g-import-not-at-top
  from tryon_jax.eval import evaluate  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import loop  # pylint: disable=g-import-not-at-top
  data = prepare_data(args)
  train_glob = data["train"][0]
  results = {"command": "python -m benchmarks.learning " + " ".join(sys.argv[1:] if argv is None else argv),
             "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
             "steps": args.steps, "num_train": args.num_train, "num_test": args.num_test,
             "sample_steps": args.sample_steps, "seed": args.seed,
             "pattern_scale": args.pattern_scale, "same_pose": args.same_pose,
             "eval_split": args.eval_split,
             "plant_place_attention": args.plant_place_attention,
             "noise_garments": args.noise_garments, "variants": {}}
  outputs, batch, masks, twin = {}, None, None, None
  for variant in variants:
    config = make_config(variant, args, train_glob)
    workdir = os.path.join(args.workdir, variant)
    plant = (plant_place_attention(args.plant_place_attention)
             if args.plant_place_attention and variant == "parallel" else None)
    train_seconds, timed_steps = train_variant(config, workdir, init_fn=plant) or (None, None)
    if batch is None:
      batch, masks = eval_batch(config, data, args.eval_split, args.num_test)
      twin = flat_twin_targets(config, data, args.eval_split, batch, masks)
      results["eval_ids"] = batch_ids(batch)
      noise = eval_noise_garment(data[args.eval_split][1], args.eval_split, results["eval_ids"])
      if noise is not None:
        results["eval_noise_garment"] = noise
      copy_input = garment_metrics(batch["garment"], batch["person"], masks, twin)
      results["eval_pose_shift"] = [None if np.isnan(v) else float(v) for v in pose_shift(batch)]
      results["reference"] = {
          "target": garment_metrics(batch["person"], batch["person"], masks, twin),
          "copy_garment_input": copy_input,
          "copy_garment_input_vs_pose_shift": trend_with_pose_shift(
              copy_input["per_example"], results["eval_pose_shift"]),
          "flat_twin": garment_metrics(twin, batch["person"], masks, twin),
          "flat_twin_soft": garment_metrics(soft_flat_twin(twin), batch["person"], masks, twin),
          "mean_colour": garment_metrics(mean_colour_targets(batch["person"], masks),
                                         batch["person"], masks, twin)}
    start = time.perf_counter()
    spec, _, state = loop.restore_state(config, workdir, config.train.num_steps)
    outputs[variant] = sample_variant(config, spec, state, batch, args.sample_steps, args.seed)
    sample_seconds = round(time.perf_counter() - start, 1)  # restore + compile + sampling
    # The same sampling noise with another pair's garment: a pattern that cannot be the target's,
    # drawn the way this network draws. Its scores are this network's zero.
    other_key = f"{variant}_other_garment"
    outputs[other_key] = sample_variant(config, spec, state, other_garments(batch),
                                        args.sample_steps, args.seed)
    other_scores = garment_metrics(outputs[other_key], batch["person"], masks, twin)
    scorer = evaluate.InceptionScorer(args.inception_weights)
    scorer.add(to_uint8(outputs[variant]), to_uint8(batch["person"]))
    image_scores = scorer.results()  # {} when skipped
    if scorer.skipped:
      results["inception_skipped"] = scorer.skipped
    curve = [(s, v) for s, v in read_curve(workdir) if s <= config.train.num_steps]
    results["variants"][variant] = {
        "params": models.count_params(config.model)["params"],
        "train_steps": args.steps,
        "train_seconds": None if train_seconds is None else round(train_seconds, 1),
        "timed_steps": timed_steps,  # fewer than train_steps where a stopped process was resumed
        "seconds_per_step": round(train_seconds / timed_steps, 3) if timed_steps else None,
        "sample_seconds": sample_seconds,
        "final_loss": curve[-1][1] if curve else None,
        "loss_curve": curve,
        **garment_metrics(outputs[variant], batch["person"], masks, twin), **image_scores,
        "garment_reliance": garment_reliance(config, spec, state, batch, masks, args.seed),
        "other_garment": other_scores}
    results["variants"][variant]["own_minus_other_garment"] = paired_difference(
        results["variants"][variant], other_scores)
    print(json.dumps({"event": "variant", "variant": variant,
                      **{k: v for k, v in results["variants"][variant].items()
                         if k not in ("loss_curve", "per_example", "other_garment")}}),
          flush=True)
  if set(VARIANTS) <= set(results["variants"]):
    both = results["variants"]["parallel"], results["variants"]["concat"]
    results["parallel_minus_concat"] = paired_difference(*both)
    results["parallel_minus_concat_vs_pose_shift"] = trend_with_pose_shift(
        per_pair_difference(*both), results["eval_pose_shift"])
  with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
    json.dump(results, f, indent=1)
  # Everything the scores were computed from, so a reading of them can be checked without
  # sampling again (images in [-1, 1], [N, R, R, 3]; garment_mask [N, R, R]). The
  # output_<variant>_other_garment samples were given other_garments(batch)'s I_c.
  np.savez_compressed(os.path.join(args.out, "samples.npz"), ids=np.asarray(results["eval_ids"]),
                      agnostic=batch["agnostic"], garment=batch["garment"],
                      target=batch["person"], flat_twin=twin, garment_mask=masks,
                      **{f"output_{k}": v for k, v in outputs.items()})
  write_grid(os.path.join(args.out, "grid.png"),
             [batch["agnostic"], batch["garment"], batch["person"]] + [outputs[v] for v in variants],
             args.grid_rows)
  write_loss_plot(os.path.join(args.out, "loss.png"),
                  {v: results["variants"][v]["loss_curve"] for v in variants})
  return results


if __name__ == "__main__":
  main()

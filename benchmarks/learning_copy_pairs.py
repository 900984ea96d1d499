"""One cross-attention layer, trained by plain regression on the learning study's own pairs.

  python -m benchmarks.learning_copy_pairs --json OUT.json [--positions none fourier] -- \\
      --workdir W --pattern_scale 4 --same_pose [--steps 2000]

Between the toy copy task (benchmarks.learning_copy: random tokens, a known place) and the
Parallel-UNet's diffusion training, this asks whether the layer can learn the copy from the
study's data: the synthetic pairs' geometry (I_c cut and scaled by its own crop, on black), their
patterns, and the scores of benchmarks.learning. The network is only:

  pred = I_a + out(CrossAttention(embed_person(I_a), embed_garment(I_c)))

at the record's full resolution (one token per pixel, as the learning config's level-0
attention), 1x1 convolutions for embed_* and out, and the level-0 channels and head size. A person
pixel sees nothing but its own I_a pixel, so it can only find the I_c pixel it shows through the
position code (``fourier``), or by content, which the grey agnostic area does not have (``none``,
the control). It is trained by MSE to the target, with the training's batches (the learning
config's data pipeline, augmentation included) and optimizer, no noise and no diffusion.

``--lined_up`` replaces every I_c, in training and scoring, by the pair's own cloth image
segmented as the converter segments it but cut with the *person's* crop instead of the garment's
(lined_up_garments): in the same-pose set (``--same_pose``) the cloth image is the person's own
rendering, so I_c then sits pixel for pixel where the target shows the garment, and reading it at
the token's own place is the whole copy. Training then walks the training records in file order
(epoch after epoch, no flips), as they must be matched to their raw cloth images by id.

``--loss_on garment`` averages the training MSE over the target's garment pixels only
(learning.garment_masks, matched by id, so again in file order). Elsewhere the agnostic image's
black box hides background, arms and neck, which no read of I_c can give: over the whole image
that residual is most of the loss, and the copy a small part of it (the toy's target noise).

``--target garment_input`` trains and scores the copier against I_c itself instead of the person
image: the toy's place task (benchmarks.learning_copy) on the study's pixels. With ``--lined_up``
the read at the token's own place is then the exact answer, where against the person image it
leaves the renderings' differences (about 21 dB on the garment); what stays from the toy is the
images: their patterns, the garments' shapes and outlines, and the fixed training pairs.

``--garment_content`` (with ``--lined_up``) replaces each lined-up garment's pixels, keeping its
shape, outline and place (``replace_garment_content``; fixed per record, as the images are):
``noise``, white noise around its mean colour with its pattern's spread (the toy's tokens;
``--noise_blur S`` blurs the noise by a Gaussian of S pixels before it is scaled, so that
neighbours agree; ``--noise_period P`` tiles one P x P draw over the grid, so that each value
recurs every P pixels, as a stripe's or check's does); ``shuffle``, its own pixels in a random
order (its colours, their mix and distribution, without their spatial arrangement); ``phase``,
its pattern with the phases of its spatial frequencies drawn at random (its amplitude spectrum:
periods, directions and correlations, without its edges' and motifs' places). Which property of
the images' patterns keeps the read from the place.

``--garment_template`` (with ``--lined_up``) then takes away from every garment pixel, or adds to
it, the pattern the training images share at that place (``pattern_template``: at each pixel, the
mean over the training garments covering it of their pixels less their mean colour; the outline's
rim, gradients, prints placed alike). ``remove`` leaves each image garment its own pattern without
what could be had from the pixel's place alone; ``add`` gives noise that shared part. The JSON's
``template_share`` is the part of the patterns' summed squares the template takes away, for the
training images and for the garments trained on, and ``pattern_correlation`` how alike two of
their pixels 1-8 px apart are. The reference ``flat_twin_template_shifted`` (the target's flat
twin with the same shift on I_c's garment pixels) is what the shift alone scores against the
target, with no read of I_c's pattern. ``--keep_ring`` gives the changed garments' outline ring
(the pixels next to black, where the rendering blends the garment into the background) its image
pixels back.

``--content_steps N`` trains on the changed garments for the first N steps only, then on the
images, and scores on the images from the start: whether a read of the place found on noise
carries to the images, and whether training on the images keeps it. ``--content_fraction F``
changes the garments of a fixed share F of the training records only (``mix_garments``) and
scores on the images: whether some such garments among the images let the read be found.

``--no_key_content`` leaves the attention's keys the position code only (``key_content_mask``:
the key half of its key/value projection held at 0), so where a pixel looks cannot depend on
the garment's pixels, only what it reads there: whether a read by content competes with the read
by place on the images.

``--positions pose_affine`` gives the layer the model's "pose_affine" code (layers.CrossAttention):
each person pixel's query is coded at the I_c place the least-squares affine map between the two
poses' torso keypoints sends it to (pose_maps), so across poses the read it can find by place is
that warp. The reference ``copy_garment_input_pose_affine`` is I_c resampled there
(warp_garments): what a perfect such read scores; its place weights are read at that place.
``--positions pose_parts`` maps each person pixel by its nearest body part instead (the torso's
map or a limb's, layers.part_places), with the reference ``copy_garment_input_pose_parts``.

Everything after ``--`` is benchmarks.learning's own flags: the same workdir, data set and held-out
pairs; --steps is this layer's training steps. Every --eval_every steps the held-out pairs are
scored with benchmarks.learning.garment_metrics (PSNR, SSIM, detail and pattern corr. on the
garment); the references are copying I_c pixel for pixel (``copy_garment_input``, what reading I_c
at the token's own place gives) and the target's flat twin. The attention is read back too
(``place_weights``): the weight each person pixel inside the garment puts on the I_c pixel at its
own place (``own_place_weight``; 1 / R^2 for even attention) and within one pixel of it
(``near_place_weight``; 9 / R^2 for even attention), head mean, over the held-out pairs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import scipy.ndimage

from benchmarks import learning
from benchmarks.learning_copy import (POSITIONS, call_recording_weights, layer_shape,
                                      make_token_copier)

SCORES = ("psnr_garment", "ssim", "ssim_garment", "detail_corr_garment", "pattern_corr_garment",
          "own_place_weight", "near_place_weight")
TARGET_KEYS = {"person": "person", "garment_input": "garment"}  # --target -> the batch's key
TARGETS = tuple(TARGET_KEYS)
# The toy's position codes, and the pose's: "pose_affine" codes each person pixel at the I_c place
# the torso keypoints' affine map sends it to (layers.CrossAttention), the warp across poses;
# "pose_parts" at the place its nearest body part's map sends it to.
POSE_POSITIONS = ("pose_affine", "pose_parts")
PAIR_POSITIONS = (*POSITIONS, *POSE_POSITIONS)
GARMENT_CONTENTS = ("image", "noise", "shuffle", "phase")
PATTERN_LAGS = (1, 2, 4, 8)  # pixels; the held-out stripe periods at pattern scale 4 are 2-7 px
GARMENT_TEMPLATES = {"keep": 0, "remove": -1, "add": 1}  # the sign pattern_template is added with


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, argparse.Namespace]:
  """(this probe's args, benchmarks.learning args) from ``FLAGS -- LEARNING_FLAGS``."""
  argv = list(sys.argv[1:] if argv is None else argv)
  split = argv.index("--") if "--" in argv else len(argv)
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--json", default="", help="also write every run's result here")
  p.add_argument("--positions", nargs="+", default=list(POSITIONS), choices=PAIR_POSITIONS)
  p.add_argument("--eval_every", type=int, default=250)
  p.add_argument("--loss_on", default="image", choices=("image", "garment"),
                 help="the MSE over the whole image, or over the target's garment pixels only "
                      "(training then walks the records in file order, as --lined_up does)")
  p.add_argument("--target", default="person", choices=TARGETS,
                 help="what the copier is trained and scored against: the person image, or I_c "
                      "itself (the toy's place task on the study's pixels)")
  p.add_argument("--garment_content", default="image", choices=GARMENT_CONTENTS,
                 help="the lined-up garments' pixels, white noise of their colour and spread, "
                      "their own pixels shuffled, or their pattern's phases drawn at random "
                      "(replace_garment_content); needs --lined_up")
  p.add_argument("--noise_blur", type=float, default=0.0,
                 help="--garment_content noise: the noise's Gaussian blur in pixels (0: white)")
  p.add_argument("--noise_period", type=int, default=0,
                 help="--garment_content noise: one P x P draw of the noise tiled over the grid "
                      "(0: every pixel its own)")
  p.add_argument("--garment_template", default="keep", choices=tuple(GARMENT_TEMPLATES),
                 help="after --garment_content, take away from every garment pixel, or add to "
                      "it, the training images' pattern template (pattern_template); needs "
                      "--lined_up")
  p.add_argument("--no_key_content", action="store_true",
                 help="the attention's keys carry the position code only, not the garment's "
                      "pixels (key_content_mask); needs --positions fourier")
  p.add_argument("--keep_ring", action="store_true",
                 help="after --garment_content, give the garment's outline ring (its pixels next "
                      "to black) its image pixels back")
  p.add_argument("--content_steps", type=int, default=0,
                 help="train on the changed garments (--garment_content, --garment_template) for "
                      "this many steps only, then on the images, and score on the images (0: "
                      "train and score on the changed garments throughout)")
  p.add_argument("--content_fraction", type=float, default=0.0,
                 help="train on the changed garments for this share of the training records "
                      "(mix_garments), on the images for the rest, and score on the images (0: "
                      "every record changed)")
  p.add_argument("--lined_up", action="store_true",
                 help="I_c cut with the person's crop (lined_up_garments); needs --same_pose")
  args = p.parse_args(argv[:split])
  if args.eval_every < 1:
    p.error(f"--eval_every={args.eval_every} must be >= 1")
  largs = learning.parse_args(argv[split + 1:])
  if args.lined_up and not largs.same_pose:
    p.error("--lined_up needs the same-pose set (--same_pose after --): elsewhere the cloth "
            "image shows another pose")
  if args.noise_blur < 0 or (args.noise_blur and args.garment_content != "noise"):
    p.error(f"--noise_blur={args.noise_blur}: a blur >= 0 of --garment_content noise")
  if args.noise_period < 0 or (args.noise_period and args.garment_content != "noise"):
    p.error(f"--noise_period={args.noise_period}: a period >= 0 of --garment_content noise")
  for flag, value, default in (("--garment_content", args.garment_content, "image"),
                               ("--garment_template", args.garment_template, "keep")):
    if value != default and not args.lined_up:
      p.error(f"{flag} {value} needs --lined_up (it changes the lined-up garments' pixels)")
  if args.no_key_content and args.positions != ["fourier"]:
    p.error("--no_key_content leaves the keys the position code only: it needs --positions "
            "fourier")
  if args.keep_ring and args.garment_content == "image":
    p.error("--keep_ring keeps the images' outline ring in garments --garment_content changes")
  changed = args.garment_content != "image" or args.garment_template != "keep"
  if args.content_fraction and not (changed and 0 < args.content_fraction < 1):
    p.error(f"--content_fraction={args.content_fraction}: a share in (0, 1) of the training "
            "records whose garments are changed (--garment_content, --garment_template)")
  if args.content_steps and not (changed and 0 < args.content_steps < largs.steps):
    p.error(f"--content_steps={args.content_steps}: a step count in (0, --steps) after which "
            "changed garments (--garment_content, --garment_template) give way to the images")
  return args, largs


def lined_up_garments(records_glob: str, raw_root: str, split: str, ids: Sequence[str],
                      resolution: int) -> np.ndarray:
  """I_c of each record in ``ids`` [N, R, R, 3] in [-1, 1]: its raw cloth image times its cloth
  mask (the converter's segmentation), cut with the record's person crop, not its garment crop."""
  from data_pipelines import _convert  # pylint: disable=g-import-not-at-top
  from tryon_jax.data import pipeline, preprocess  # pylint: disable=g-import-not-at-top
  threshold = _convert.make_options().garment_mask_threshold
  by_id = learning.records_by_id(records_glob)
  out = []
  for rid in ids:
    rec = by_id[rid]
    name = rec.garment_id + ".jpg"
    cloth = _convert.read_rgb(os.path.join(raw_root, split, "cloth", name), "cloth image")
    mask = _convert.read_mask(os.path.join(raw_root, split, "cloth-mask", name), threshold)
    crop = tuple(int(round(v)) for v in rec.person_crop)
    out.append(pipeline.to_float(preprocess.crop_resize(
        preprocess.segment_garment(cloth, mask), crop, resolution, nearest=False,
        pad_mode="constant", pad_value=0)))
  return np.stack(out)


GARMENT_FLOOR = -0.98  # I_c's background is black (-1); a pixel above it in any channel is garment


def garment_pixels(garments: np.ndarray) -> np.ndarray:
  """garments [..., R, R, 3] on black -> [..., R, R] bool: the pixels above GARMENT_FLOOR."""
  return (garments > GARMENT_FLOOR).any(-1)


def garment_patterns(garments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """garments [N, R, R, 3] on black -> (garment pixels [N, R, R] bool, patterns [N, R, R, 3]:
  each garment's pixels less its mean colour, 0 off the garment)."""
  on = garment_pixels(garments)
  colours = (garments * on[..., None]).sum((1, 2)) / np.maximum(on.sum((1, 2)), 1)[:, None]
  return on, np.where(on[..., None], garments - colours[:, None, None], 0)


def pattern_template(garments: np.ndarray) -> tuple[np.ndarray, float]:
  """garments [N, R, R, 3] on black -> (template [R, R, 3], share): the patterns' structure that
  is common to the garments at each place.

  A garment's pattern is its pixels less its mean colour. The template at a pixel is the mean of
  the patterns of the garments that cover it (0 where none does); the share is the fraction of
  the patterns' summed squares that taking it away from every covered pixel removes (0: nothing
  shared by place, as for noise; 1: every garment's pattern is the template).
  """
  on, patterns = garment_patterns(garments)
  template = patterns.sum(0) / np.maximum(on.sum(0), 1)[..., None]
  residual = np.where(on[..., None], patterns - template, 0)
  total = float(np.sum(patterns.astype(np.float64) ** 2))
  share = 1 - float(np.sum(residual.astype(np.float64) ** 2)) / total if total else 0.0
  return template.astype(garments.dtype), share


def pattern_correlation(garments: np.ndarray, lags: Sequence[int]) -> dict[str, float]:
  """garments [N, R, R, 3] on black -> {str(lag): correlation}: how alike the patterns (pixels
  less the garment's mean colour, channel mean) are at two garment pixels ``lag`` apart along a
  row or a column, pooled over the garments (1: alike at that distance; about 0 for white noise;
  below 0 where a stripe's half period sits)."""
  on, patterns = garment_patterns(garments)
  pattern = patterns.mean(-1).astype(np.float64)
  out = {}
  for lag in lags:
    pairs = [(pattern[:, lag:], pattern[:, :-lag], on[:, lag:] & on[:, :-lag]),
             (pattern[:, :, lag:], pattern[:, :, :-lag], on[:, :, lag:] & on[:, :, :-lag])]
    products = sum(np.sum(a * b * both) for a, b, both in pairs)
    norms = np.sqrt(sum(np.sum(a ** 2 * both) for a, _, both in pairs)
                    * sum(np.sum(b ** 2 * both) for _, b, both in pairs))
    out[str(lag)] = float(products / norms) if norms else 0.0
  return out


def replace_garment_content(garments: np.ndarray, ids: Sequence[str], seed: int,
                            content: str, noise_blur: float = 0.0, noise_period: int = 0,
                            template_shift: np.ndarray | None = None,
                            keep_ring: bool = False) -> np.ndarray:
  """garments [N, R, R, 3] in [-1, 1] on black -> the same, each garment's pixels (those above
  GARMENT_FLOOR in a channel) replaced; the black is kept.

  content: "image", nothing replaced; "noise", the garment's mean colour plus the RMS of its pixels
  about it times white noise (each pixel and channel its own; with ``noise_blur`` > 0, noise drawn
  over the whole grid and blurred by a Gaussian of that many pixels, then brought back to unit RMS
  on the garment; with ``noise_period`` P > 0, one P x P draw tiled over the grid and brought back
  to unit RMS on the garment), clipped to [-1, 1]; "shuffle", the garment's own pixels in a random
  order over its places; "phase", its pattern (its pixels less its mean colour, 0 off the garment,
  over the R x R grid) with every spatial frequency's phase turned by a random angle, the same in
  the three channels, and brought back to its RMS on the garment: its amplitude spectrum, so its
  periods, directions and correlations, without where its edges, prints and motifs sit. The draw
  comes from the record's id and ``seed``: fixed per record.
  template_shift [R, R, 3] (main's ± pattern_template): then added to every garment pixel, and
  the result clipped to [-1, 1]. keep_ring: then the garment's outline ring (its pixels with a
  non-garment pixel above, below or beside them) gets its own pixels back.
  """
  if content not in GARMENT_CONTENTS:
    raise ValueError(f"content={content!r}: expected one of {GARMENT_CONTENTS}")
  out = garments.copy()
  for garment, new, rid in zip(garments, out, ids):
    on = garment_pixels(garment)
    pixels = garment[on]
    rng = np.random.default_rng([seed, zlib.crc32(rid.encode())])
    if not len(pixels) or content == "image":
      pass
    elif content == "noise":
      spread = np.sqrt(np.mean((pixels - pixels.mean(0)) ** 2))
      if noise_blur or noise_period:
        r = garment.shape[0]
        if noise_period:
          tiles = -(-r // noise_period)
          grid = np.tile(rng.standard_normal((noise_period, noise_period, 3)),
                         (tiles, tiles, 1))[:r, :r]
        else:
          grid = rng.standard_normal(garment.shape)
        if noise_blur:
          grid = scipy.ndimage.gaussian_filter(grid, (noise_blur, noise_blur, 0))
        noise = grid[on] / np.sqrt(np.mean(grid[on] ** 2))
      else:
        noise = rng.standard_normal(pixels.shape)
      new[on] = np.clip(pixels.mean(0) + spread * noise.astype(garments.dtype), -1, 1)
    elif content == "shuffle":
      new[on] = pixels[rng.permutation(len(pixels))]
    else:
      colour = pixels.mean(0)
      spectrum = np.fft.fft2(np.where(on[..., None], garment - colour, 0), axes=(0, 1))
      turn = np.angle(np.fft.fft2(rng.standard_normal(on.shape)))[..., None]  # odd: stays real
      field = np.real(np.fft.ifft2(spectrum * np.exp(1j * turn), axes=(0, 1)))[on]
      spread = np.sqrt(np.mean((pixels - colour) ** 2) / max(np.mean(field ** 2), 1e-12))
      new[on] = np.clip(colour + spread * field, -1, 1)
    if template_shift is not None:
      new[on] = np.clip(new[on] + template_shift[on], -1, 1)
    if keep_ring:
      ring = on & ~scipy.ndimage.binary_erosion(on)
      new[ring] = garment[ring]
  return out


def mix_garments(changed: np.ndarray, images: np.ndarray, ids: Sequence[str], seed: int,
                 fraction: float) -> np.ndarray:
  """changed, images [N, R, R, 3] -> [N, R, R, 3]: each record's changed garment with
  probability ``fraction``, its image otherwise; the draw comes from the record's id and
  ``seed``, so a record keeps its choice in every epoch and run."""
  pick = np.array([np.random.default_rng([seed, zlib.crc32(rid.encode()), 1]).random() < fraction
                   for rid in ids], bool)
  return np.where(pick[:, None, None, None], changed, images)


def file_order_batches(config, records_glob: str, raw_root: str, split: str,
                       lined_up: bool, garment_masks: bool = False,
                       replace_garments: Callable | None = None) -> Iterator[dict]:
  """Endless batches of config.train.batch_size training records in file order (eval decoding,
  no flips), I_c lined up (lined_up_garments) if asked, and with the target garment masks
  [B, R, R] bool (learning.garment_masks) as "garment_mask" if asked; the last partial batch of
  an epoch is dropped. replace_garments(garments, ids): applied to the lined-up garments once
  (main's replace_garment_content with the run's settings)."""
  from tryon_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  size, resolution = int(config.train.batch_size), int(config.data.resolution)
  ids = list(learning.records_by_id(records_glob))
  if lined_up:
    lined = lined_up_garments(records_glob, raw_root, split, ids, resolution)
    if replace_garments is not None:
      lined = replace_garments(lined, ids)
    garments = dict(zip(ids, lined))
  if garment_masks:
    masks = dict(zip(ids, learning.garment_masks(records_glob, raw_root, split, ids, resolution)))
  while True:
    for batch in pipeline.make_eval_dataset(config, records_glob, size):
      if batch["valid"].min() < 1:
        break
      batch = dict(batch)
      if lined_up:
        batch["garment"] = np.stack([garments[i] for i in learning.batch_ids(batch)])
      if garment_masks:
        batch["garment_mask"] = np.stack([masks[i] for i in learning.batch_ids(batch)])
      yield batch


def place_weights(weights: np.ndarray, masks: np.ndarray,
                  maps=None) -> dict[str, float]:
  """weights [B, heads, R*R, R*R] (person pixel -> I_c pixel, row-major), masks [B, R, R] bool ->
  the head-mean weight a masked person pixel puts on the I_c pixel at its own place
  (``own_place_weight``) and on the 3 x 3 pixels around it (``near_place_weight``), averaged over
  the masked pixels of all examples. With maps (pose_maps) the place is the I_c pixel nearest
  where the maps send the person pixel's centre, instead of its own."""
  b, r = masks.shape[:2]
  w = np.asarray(weights, np.float32).mean(axis=1).reshape(b, r, r, r, r)
  padded = np.pad(w, ((0, 0), (0, 0), (0, 0), (1, 1), (1, 1)))  # keys off the grid weigh 0
  i = np.arange(r)
  rows, cols = np.broadcast_to(i[:, None], (r, r)), np.broadcast_to(i[None, :], (r, r))
  to_rows, to_cols = np.broadcast_to(rows, (b, r, r)), np.broadcast_to(cols, (b, r, r))
  if maps is not None:  # the mapped place, in padded pixels clipped to the zero border
    places = mapped_places(maps, r)
    to_rows, to_cols = (np.clip(np.round(places[..., k] * r - 0.5), -1, r).astype(int)
                        for k in (1, 0))
  ex = np.arange(b)[:, None, None]
  own = padded[ex, rows, cols, to_rows + 1, to_cols + 1]  # [B, R, R]
  near = sum(padded[ex, rows, cols, np.clip(to_rows + 1 + dr, 0, r + 1),
                    np.clip(to_cols + 1 + dc, 0, r + 1)]
             for dr in (-1, 0, 1) for dc in (-1, 0, 1))
  return {"own_place_weight": float(own[masks].mean()),
          "near_place_weight": float(near[masks].mean())}


POSE_KEYS = ("person_pose", "person_pose_mask", "garment_pose", "garment_pose_mask")


def pose_map_fn(config, position: str = "pose_affine") -> Callable:
  """(person_pose, person_pose_mask, garment_pose, garment_pose_mask) -> the model's person ->
  garment place maps for ``position`` (pose.place_maps over config.model's keypoints: [B, 3, 2]
  for "pose_affine", layers.PartMaps for "pose_parts"). What a copier with that code reads
  through; traceable under jit."""
  from tryon_jax.models import pose  # pylint: disable=g-import-not-at-top
  spec = pose.place_map_spec(config.model, position)
  if spec is None:
    raise ValueError(f"pose_map_fn(position={position!r}): expected one of {POSE_POSITIONS}")
  return lambda *poses: pose.place_maps(spec, *poses)


def pose_maps(config, batch: dict, position: str = "pose_affine"):
  """pose_map_fn's maps of ``batch``'s poses (the POSE_KEYS entries), as numpy arrays."""
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree.map(np.asarray, pose_map_fn(config, position)(*(batch[k] for k in POSE_KEYS)))


def mapped_places(maps, side: int) -> np.ndarray:
  """[B, side, side, 2]: the (x, y) place in [0, 1] the maps (pose_maps) send each pixel centre
  to."""
  from tryon_jax.models import layers  # pylint: disable=g-import-not-at-top
  places = np.asarray(layers.pose_places(layers.grid_places(side, side), maps))
  return places.reshape(len(places), side, side, 2)


def warp_garments(garments: np.ndarray, maps) -> np.ndarray:
  """garments [B, R, R, 3] resampled (bilinear, black outside) at mapped_places: each person
  pixel given the I_c pixel its maps send it to; the copy a perfect "pose_*" read makes."""
  r = garments.shape[1]
  out = np.empty_like(garments)
  for g, o, place in zip(garments, out, mapped_places(maps, r)):
    coords = [place[..., 1] * r - 0.5, place[..., 0] * r - 0.5]
    for ch in range(g.shape[-1]):
      o[..., ch] = scipy.ndimage.map_coordinates(g[..., ch], coords, order=1, mode="constant",
                                                 cval=-1.0)
  return out


def make_copier(config, position: str, seed: int):
  """The one-layer network of the module docstring, at config.model's level 0."""
  return make_token_copier(layer_shape(config, 0), position, seed, token_channels=3)


def key_content_mask(params):
  """A tree like ``params`` (the copier's nnx.Param state): 0 on the part of the cross-attention's
  key/value projection (attn.kv, [C, 2C] and [2C]) that makes the keys, 1 elsewhere. Multiplied
  into the parameters and every gradient, it leaves the keys only the position code."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  def mask(path, leaf):
    names = [getattr(k, "key", None) for k in path]
    ones = jnp.ones_like(leaf)
    if names[:2] != ["attn", "kv"]:
      return ones
    return ones.at[..., :leaf.shape[-1] // 2].set(0)  # keys first: jnp.split(kv, 2)
  return jax.tree_util.tree_map_with_path(mask, params)


def train_copier(config, position: str, steps: int, eval_every: int, held_out: tuple,
                 seed: int, batches: Iterator[dict], loss_on: str = "image",
                 target: str = "person", key_content: bool = True) -> dict:
  """Trains one copier on ``batches``; returns its final scores and its curve.

  held_out: (batch, garment masks [N, R, R], the targets' flat twins [N, R, R, 3]).
  loss_on="garment": the MSE is averaged over the pixels of each batch's "garment_mask" only.
  target: the batches' key trained and scored against ("person", or "garment_input": "garment").
  key_content=False: the attention's keys carry the position code only (key_content_mask).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import optim  # pylint: disable=g-import-not-at-top

  batch, masks, twin = held_out
  graphdef, params = nnx.split(make_copier(config, position, seed), nnx.Param)
  keep = None if key_content else key_content_mask(params)
  if keep is not None:
    params = jax.tree.map(jnp.multiply, params, keep)
  tx = optim.make_optimizer(config.train)
  opt_state = tx.init(params)

  # Only the "pose_*" layers read maps: fitted from the batch's poses inside the jitted step.
  fit_maps = pose_map_fn(config, position) if position in POSE_POSITIONS else None

  def poses_of(b: dict) -> tuple | None:
    return tuple(np.asarray(b[k]) for k in POSE_KEYS) if fit_maps else None

  def maps_of(poses):
    return fit_maps(*poses) if fit_maps else None

  def predict(p, agnostic, garment, poses):
    return nnx.merge(graphdef, p)(agnostic, garment, maps_of(poses))

  @jax.jit
  def step(p, opt_state, agnostic, garment, poses, target, weight):
    def loss_fn(p):  # weight [B, R, R]: 1 on the pixels the loss is over
      error = jnp.mean((predict(p, agnostic, garment, poses) - target) ** 2, axis=-1)
      return jnp.sum(weight * error) / jnp.maximum(jnp.sum(weight), 1.0)
    loss, grads = jax.value_and_grad(loss_fn)(p)
    if keep is not None:
      grads = jax.tree.map(jnp.multiply, grads, keep)
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  target_key = TARGET_KEYS[target]

  @jax.jit
  def evaluate(p, agnostic, garment, poses):
    model = nnx.merge(graphdef, p)
    return call_recording_weights(model, model.attn, agnostic, garment, maps_of(poses))

  held_out_poses = poses_of(batch)
  held_out_maps = None if held_out_poses is None else jax.tree.map(np.asarray,
                                                                   maps_of(held_out_poses))

  def score(p) -> dict:
    pred, weights = evaluate(p, batch["agnostic"], batch["garment"], held_out_poses)
    return {**learning.garment_metrics(np.asarray(pred), batch[target_key], masks, twin),
            **place_weights(np.asarray(weights), masks, held_out_maps)}

  scores = score(params)  # the last evaluation's; the final step is always evaluated
  curve = [{"step": 0, **{k: scores[k] for k in SCORES}}]
  start = time.perf_counter()
  for i in range(1, steps + 1):
    b = next(batches)
    agnostic, garment, target_images = (np.asarray(b[k]) for k in ("agnostic", "garment",
                                                                   target_key))
    weight = (np.asarray(b["garment_mask"], np.float32) if loss_on == "garment"
              else np.ones(b["person"].shape[:3], np.float32))
    params, opt_state, loss = step(params, opt_state, agnostic, garment, poses_of(b),
                                   target_images, weight)
    if i % eval_every == 0 or i == steps:
      scores = score(params)
      curve.append({"step": i, "train_loss": float(loss), **{k: scores[k] for k in SCORES}})
  seconds = time.perf_counter() - start
  return {"position": position, "loss_on": loss_on, "target": target, "steps": steps,
          "key_content": key_content,
          "seconds": round(seconds, 1),
          "params": int(sum(x.size for x in jax.tree.leaves(params))), **scores,
          "curve": curve}


def main(argv: Sequence[str] | None = None) -> dict:
  args, largs = parse_args(argv)
  from benchmarks import common  # pylint: disable=g-import-not-at-top
  data = learning.prepare_data(largs)
  config = learning.make_config("parallel", largs, data["train"][0])
  batch, masks = learning.eval_batch(config, data, largs.eval_split, largs.num_test)
  twin = learning.flat_twin_targets(config, data, largs.eval_split, batch, masks)

  template_shift, template_shares, correlations = None, {}, {}
  if args.lined_up:  # the pattern template of the training images, and what training sees
    train_ids = list(learning.records_by_id(data["train"][0]))
    train_garments = lined_up_garments(*data["train"], "train", train_ids,
                                       int(config.data.resolution))
    template, template_shares["images"] = pattern_template(train_garments)
    if GARMENT_TEMPLATES[args.garment_template]:
      template_shift = GARMENT_TEMPLATES[args.garment_template] * template

  def replace_garments(garments: np.ndarray, ids: list[str]) -> np.ndarray:
    changed = replace_garment_content(garments, ids, largs.seed, args.garment_content,
                                      args.noise_blur, args.noise_period, template_shift,
                                      args.keep_ring)
    if args.content_fraction:
      return mix_garments(changed, garments, ids, largs.seed, args.content_fraction)
    return changed

  scored_on_images = bool(args.content_steps or args.content_fraction)

  if args.lined_up:
    trained = replace_garments(train_garments, train_ids)
    template_shares["trained"] = pattern_template(trained)[1]
    correlations = {"images": pattern_correlation(train_garments, PATTERN_LAGS),
                    "trained": pattern_correlation(trained, PATTERN_LAGS)}
    batch["garment"] = lined_up_garments(*data[largs.eval_split], largs.eval_split,
                                         learning.batch_ids(batch), int(config.data.resolution))
    if not scored_on_images:  # scored on what it trains on, or on the images
      batch["garment"] = replace_garments(batch["garment"], learning.batch_ids(batch))
  result = {"command": common.command_line(), "device": common.device_info(),
            "lined_up": args.lined_up, "garment_content": args.garment_content,
            "noise_blur": args.noise_blur, "noise_period": args.noise_period,
            "garment_template": args.garment_template, "content_steps": args.content_steps,
            "content_fraction": args.content_fraction,
            "keep_ring": args.keep_ring,
            "template_share": template_shares,
            "pattern_correlation": correlations,
            "loss_on": args.loss_on, "target": args.target,
            "learning_flags": vars(largs),
            "eval_ids": learning.batch_ids(batch),
            "reference": {
                "copy_garment_input": learning.garment_metrics(batch["garment"], batch["person"],
                                                               masks, twin),
                **{f"copy_garment_input_{position}": learning.garment_metrics(
                    warp_garments(batch["garment"], pose_maps(config, batch, position)),
                    batch["person"], masks, twin) for position in POSE_POSITIONS},
                "flat_twin": learning.garment_metrics(twin, batch["person"], masks, twin)},
            "runs": {}}
  if template_shift is not None and not scored_on_images:  # what no read of I_c scores
    shifted = np.where(garment_pixels(batch["garment"])[..., None],
                       np.clip(twin + template_shift, -1, 1), twin)
    result["reference"]["flat_twin_template_shifted"] = learning.garment_metrics(
        shifted, batch[TARGET_KEYS[args.target]], masks, twin)
  for position in args.positions:
    if args.lined_up or args.loss_on == "garment":
      batches = file_order_batches(config, *data["train"], "train", lined_up=args.lined_up,
                                   garment_masks=args.loss_on == "garment",
                                   replace_garments=replace_garments)
      if args.content_steps:
        images = file_order_batches(config, *data["train"], "train", lined_up=True,
                                    garment_masks=args.loss_on == "garment")
        batches = itertools.chain(itertools.islice(batches, args.content_steps), images)
    else:
      from tryon_jax.data import pipeline  # pylint: disable=g-import-not-at-top
      batches = iter(pipeline.make_train_dataset(config))
    run = train_copier(config, position, largs.steps, args.eval_every, (batch, masks, twin),
                       largs.seed, batches, args.loss_on, args.target,
                       key_content=not args.no_key_content)
    common.emit({"position": position, **{k: run[k] for k in ("steps", "seconds", "params",
                                                               *SCORES)}})
    result["runs"][position] = run
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=1)
  return result


if __name__ == "__main__":
  main()

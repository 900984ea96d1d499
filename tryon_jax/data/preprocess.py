"""The paper's offline preprocessing, as pure numpy functions on one (person, garment) pair.

  I_a (agnostic): the person's bounding box (parse foreground + visible keypoints, grown by
      `box_margin`) is filled with `agnostic_fill`; then head, lower body and hands are pasted back
      from the original photo. Head / lower body are parse labels (labels.LabelSet). Hands are arm
      (or glove) pixels near a wrist: within `hand_radius` x forearm length (|wrist - elbow|) of the
      wrist and not further than `wrist_margin` x forearm length behind it towards the elbow, so the
      forearm (whose visible skin would reveal the sleeve length) stays masked. With the elbow
      unseen: a disk of `hand_fallback_radius` x person-box height; with the wrist unseen: no hand.
  I_c (segmented garment): garment image x garment mask (everything else 0).
  Crops: a square around the person (garment) box, side (1 + 2 crop_margin) x its longest side,
      padded where it leaves the photo, resized to `resolution`. Keypoints are normalized to [0, 1]
      by that square.
Coordinates are pixels (x right, y down) until `normalize_keypoints`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from PIL import Image

from tryon_jax.data import labels
from tryon_jax.data import schema

K = labels.NUM_KEYPOINTS


class InputError(ValueError):
  """Input that cannot make a record (the converters skip the pair and report the message)."""


@dataclasses.dataclass(frozen=True)
class PreprocessOptions:
  """Mirrors config.data.preprocess (configs/common.py documents each value)."""
  resolution: int
  agnostic_fill: int
  box_margin: float
  crop_margin: float
  pad_mode: str
  pad_value: int
  hand_radius: float
  wrist_margin: float
  hand_fallback_radius: float
  keypoint_min_confidence: float
  min_person_keypoints: int
  garment_mask_threshold: int
  background_threshold: int
  image_format: str
  jpeg_quality: int

  @classmethod
  def from_config(cls, cfg: Any, **overrides) -> "PreprocessOptions":
    """From a ConfigDict (config.data.preprocess); keyword overrides win (CLI flags)."""
    values = {f.name: cfg[f.name] for f in dataclasses.fields(cls)}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**values)


# ---------------------------------------------------------------- keypoint file formats
def keypoints_from_openpose(obj: Any, min_confidence: float) -> tuple[np.ndarray, np.ndarray]:
  """OpenPose JSON (BODY_25 or COCO-18 `pose_keypoints_2d`) -> COCO-18 pixels [18, 2], mask [18].

  Takes the person with the highest summed confidence. Raises InputError on a malformed file and
  on a file with no people ("no person detected").
  """
  try:
    people = obj["people"]
  except (TypeError, KeyError):
    raise InputError("keypoint JSON has no 'people' list") from None
  if not people:
    raise InputError("no person detected (keypoint JSON has no people)")
  best = None
  for person in people:
    try:
      flat = np.asarray(person["pose_keypoints_2d"], dtype=np.float64)
    except (TypeError, KeyError, ValueError):
      raise InputError("keypoint JSON: 'pose_keypoints_2d' missing or not numbers") from None
    if flat.ndim != 1 or flat.size not in (25 * 3, 18 * 3):
      raise InputError(f"keypoint JSON: 'pose_keypoints_2d' has {flat.size} values, want 75 or 54")
    pts = flat.reshape(-1, 3)
    if best is None or pts[:, 2].sum() > best[:, 2].sum():
      best = pts
  if best.shape[0] == 25:
    best = best[list(labels.BODY25_TO_COCO18)]
  return _visible(best[:, :2], best[:, 2], min_confidence)


def keypoints_from_dresscode(obj: Any, scale: tuple[float, float],
                             min_confidence: float) -> tuple[np.ndarray, np.ndarray]:
  """DressCode `keypoints/*_2.json` ({"keypoints": 18 x [x, y, score, id]}) -> pixels, mask.

  DressCode writes coordinates in a 384 x 512 frame; `scale` = (image_w / 384, image_h / 512).
  """
  try:
    pts = np.asarray(obj["keypoints"], dtype=np.float64)
  except (TypeError, KeyError, ValueError):
    raise InputError("keypoint JSON has no numeric 'keypoints' list") from None
  if pts.ndim != 2 or pts.shape[0] != K or pts.shape[1] < 3:
    raise InputError(f"keypoint JSON: 'keypoints' has shape {pts.shape}, want [18, >=3]")
  xy = pts[:, :2] * np.asarray(scale)
  return _visible(xy, pts[:, 2], min_confidence)


def _visible(xy: np.ndarray, conf: np.ndarray, min_confidence: float):
  if not np.all(np.isfinite(xy)) or not np.all(np.isfinite(conf)):
    raise InputError("keypoint JSON has non-finite coordinates")
  # OpenPose / DressCode write unseen points as (0, 0): never trust those, whatever the score.
  mask = (conf > min_confidence) & ~((xy[:, 0] <= 0) & (xy[:, 1] <= 0))
  xy = np.where(mask[:, None], xy, 0.0)
  return xy.astype(np.float32), mask.astype(np.float32)


# ---------------------------------------------------------------- geometry
def person_box(parse: np.ndarray, kps: np.ndarray, kps_mask: np.ndarray) -> tuple[float, ...] | None:
  """Box (x0, y0, x1, y1), exclusive max, of parse foreground [H, W] plus visible keypoints
  (clipped to the photo); None when the parse has no foreground."""
  ys, xs = np.nonzero(parse)
  if not xs.size:
    return None
  h, w = parse.shape
  vis = kps[kps_mask > 0]
  all_x = np.concatenate([[xs.min(), xs.max() + 1], np.clip(vis[:, 0], 0, w)])
  all_y = np.concatenate([[ys.min(), ys.max() + 1], np.clip(vis[:, 1], 0, h)])
  return float(all_x.min()), float(all_y.min()), float(all_x.max()), float(all_y.max())


def mask_box(mask: np.ndarray, kps: np.ndarray | None = None,
             kps_mask: np.ndarray | None = None) -> tuple[float, ...] | None:
  """Box of a boolean mask (plus visible keypoints if given); None if the mask is empty."""
  if kps is None:
    kps, kps_mask = np.zeros((K, 2), np.float32), np.zeros((K,), np.float32)
  return person_box(mask.astype(np.uint8), kps, kps_mask)


def square_crop(box: tuple[float, ...], crop_margin: float) -> tuple[int, int, int]:
  """Square (x0, y0, side) in integer pixels centred on `box`; may extend past the photo."""
  x0, y0, x1, y1 = box
  side = max(1, math.ceil(max(x1 - x0, y1 - y0) * (1.0 + 2.0 * crop_margin)))
  cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
  return int(round(cx - side / 2.0)), int(round(cy - side / 2.0)), side


def crop_resize(image: np.ndarray, crop: tuple[int, int, int], resolution: int, *, nearest: bool,
                pad_mode: str, pad_value: int) -> np.ndarray:
  """Cuts the square `crop` out of image [H, W, C] (padding outside) and resizes to [R, R, C]."""
  x0, y0, side = crop
  h, w = image.shape[:2]
  pad = (max(0, -y0), max(0, y0 + side - h)), (max(0, -x0), max(0, x0 + side - w))
  if any(p for pair in pad for p in pair):
    widths = pad + ((0, 0),) * (image.ndim - 2)
    if pad_mode == "edge":
      image = np.pad(image, widths, mode="edge")
    elif pad_mode == "constant":
      image = np.pad(image, widths, mode="constant", constant_values=pad_value)
    else:
      raise ValueError(f"pad_mode must be 'edge' or 'constant', got {pad_mode!r}")
  top, left = y0 + pad[0][0], x0 + pad[1][0]
  patch = image[top:top + side, left:left + side]
  if side == resolution:
    return np.ascontiguousarray(patch)
  resample = Image.NEAREST if nearest else Image.BICUBIC  # PIL's bicubic antialiases downscaling.
  return np.asarray(Image.fromarray(patch).resize((resolution, resolution), resample))


def normalize_keypoints(kps: np.ndarray, kps_mask: np.ndarray,
                        crop: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
  """Pixels [18, 2] -> [0, 1] inside the square crop; points outside it become missing."""
  x0, y0, side = crop
  norm = (kps - np.asarray([x0, y0], np.float32)) / float(side)
  inside = np.all((norm >= 0.0) & (norm <= 1.0), axis=1)
  mask = ((kps_mask > 0) & inside).astype(np.float32)
  return np.where(mask[:, None] > 0, norm, 0.0).astype(np.float32), mask


def flip_keypoints(kps: np.ndarray, kps_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Horizontal flip of normalized keypoints [..., 18, 2]: x -> 1 - x, left/right swapped."""
  flipped = kps[..., labels.COCO18_FLIP_PERM, :].copy()
  mask = kps_mask[..., labels.COCO18_FLIP_PERM]
  flipped[..., 0] = np.where(mask > 0, 1.0 - flipped[..., 0], 0.0)
  return flipped, mask


# ---------------------------------------------------------------- agnostic image and garment
def hand_mask(parse: np.ndarray, kps: np.ndarray, kps_mask: np.ndarray, label_set: labels.LabelSet,
              box_height: float, opts: PreprocessOptions) -> np.ndarray:
  """Boolean [H, W]: arm/glove pixels that are hands (rule in the module docstring)."""
  h, w = parse.shape
  out = np.zeros((h, w), bool)
  for elbow, wrist, arm_ids in ((labels.R_ELBOW, labels.R_WRIST, label_set.right_arm),
                                (labels.L_ELBOW, labels.L_WRIST, label_set.left_arm)):
    if kps_mask[wrist] <= 0:
      continue
    wx, wy = kps[wrist]
    direction = None
    if kps_mask[elbow] > 0:
      forearm = float(np.hypot(*(kps[wrist] - kps[elbow])))
      if forearm > 0:
        radius = opts.hand_radius * forearm
        direction = (kps[wrist] - kps[elbow]) / forearm
    if direction is None:
      radius = opts.hand_fallback_radius * box_height
    # Only a window around the wrist can be hand: keeps this cheap at 1024 px.
    x_lo, x_hi = max(0, int(wx - radius)), min(w, int(wx + radius) + 2)
    y_lo, y_hi = max(0, int(wy - radius)), min(h, int(wy + radius) + 2)
    if x_lo >= x_hi or y_lo >= y_hi:
      continue
    yy, xx = np.mgrid[y_lo:y_hi, x_lo:x_hi]
    dx, dy = xx + 0.5 - wx, yy + 0.5 - wy
    near = dx * dx + dy * dy <= radius * radius
    if direction is not None:
      near &= dx * direction[0] + dy * direction[1] >= -opts.wrist_margin * forearm
    near &= np.isin(parse[y_lo:y_hi, x_lo:x_hi], list(arm_ids))
    out[y_lo:y_hi, x_lo:x_hi] |= near
  return out


def agnostic_image(image: np.ndarray, parse: np.ndarray, kps: np.ndarray, kps_mask: np.ndarray,
                   label_set: labels.LabelSet, opts: PreprocessOptions) -> np.ndarray:
  """I_a: uint8 [H, W, 3]. Person box filled, head + lower body + hands pasted back."""
  box = person_box(parse, kps, kps_mask)
  if box is None:
    raise InputError("no person detected (parse map has no foreground)")
  x0, y0, x1, y1 = box
  gx, gy = opts.box_margin * (x1 - x0), opts.box_margin * (y1 - y0)
  h, w = parse.shape
  bx0, by0 = max(0, int(math.floor(x0 - gx))), max(0, int(math.floor(y0 - gy)))
  bx1, by1 = min(w, int(math.ceil(x1 + gx))), min(h, int(math.ceil(y1 + gy)))
  keep = np.isin(parse, list(label_set.head | label_set.lower))
  keep |= hand_mask(parse, kps, kps_mask, label_set, y1 - y0, opts)
  keep &= ~np.isin(parse, list(label_set.garment))  # a kept id is never a garment id; be sure.
  out = image.copy()
  region = out[by0:by1, bx0:bx1]
  region[~keep[by0:by1, bx0:bx1]] = opts.agnostic_fill
  return out


def segment_garment(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """I_c: uint8 [H, W, 3], pixels outside the boolean mask [H, W] set to 0."""
  return np.where(mask[..., None], image, 0).astype(np.uint8)


# ---------------------------------------------------------------- one pair -> one record
def make_record(*, pair_id: str, person_id: str, garment_id: str, source: str,
                label_set: labels.LabelSet, person_image: np.ndarray, person_parse: np.ndarray,
                person_kps: np.ndarray, person_kps_mask: np.ndarray, garment_image: np.ndarray,
                garment_mask: np.ndarray, garment_kps: np.ndarray | None,
                garment_kps_mask: np.ndarray | None, opts: PreprocessOptions) -> schema.TryOnRecord:
  """Builds the record of one pair: agnostic + segmented garment, square crops, normalized pose.

  person_image uint8 [H, W, 3]; person_parse int [H, W]; person_kps pixels [18, 2], mask [18];
  garment_image uint8 [Hg, Wg, 3]; garment_mask bool [Hg, Wg]; garment_kps None = lay-flat.
  Raises InputError for pairs that cannot make a record.
  """
  if person_parse.shape != person_image.shape[:2]:
    raise InputError(f"parse map is {person_parse.shape[1]}x{person_parse.shape[0]} but the image "
                     f"is {person_image.shape[1]}x{person_image.shape[0]}")
  if garment_mask.shape != garment_image.shape[:2]:
    raise InputError(f"garment mask is {garment_mask.shape[1]}x{garment_mask.shape[0]} but the "
                     f"garment image is {garment_image.shape[1]}x{garment_image.shape[0]}")
  if person_kps_mask.sum() < opts.min_person_keypoints:
    raise InputError(f"no person detected ({int(person_kps_mask.sum())} visible keypoints, "
                     f"need {opts.min_person_keypoints})")
  box = person_box(person_parse, person_kps, person_kps_mask)
  if box is None:
    raise InputError("no person detected (parse map has no foreground)")
  if not garment_mask.any():
    raise InputError("garment mask is empty")
  agnostic = agnostic_image(person_image, person_parse, person_kps, person_kps_mask, label_set, opts)
  garment = segment_garment(garment_image, garment_mask)
  pose_present = garment_kps is not None
  if not pose_present:
    garment_kps, garment_kps_mask = np.zeros((K, 2), np.float32), np.zeros((K,), np.float32)
  p_crop = square_crop(box, opts.crop_margin)
  g_crop = square_crop(mask_box(garment_mask, garment_kps, garment_kps_mask), opts.crop_margin)
  res, pad = opts.resolution, dict(pad_mode=opts.pad_mode, pad_value=opts.pad_value)
  p_kps, p_mask = normalize_keypoints(person_kps, person_kps_mask, p_crop)
  g_kps, g_mask = normalize_keypoints(garment_kps, garment_kps_mask, g_crop)
  return schema.TryOnRecord(
      id=pair_id, person_id=person_id, garment_id=garment_id, source=source,
      label_set=label_set.name,
      person=crop_resize(person_image, p_crop, res, nearest=False, **pad),
      agnostic=crop_resize(agnostic, p_crop, res, nearest=False, **pad),
      # I_c is 0 outside the garment by definition: pad with 0, never with edge pixels.
      garment=crop_resize(garment, g_crop, res, nearest=False, pad_mode="constant", pad_value=0),
      person_pose=p_kps, person_pose_mask=p_mask, garment_pose=g_kps, garment_pose_mask=g_mask,
      garment_pose_present=pose_present,
      person_orig_size=tuple(person_image.shape[:2]), garment_orig_size=tuple(garment_image.shape[:2]),
      person_crop=tuple(float(v) for v in p_crop), garment_crop=tuple(float(v) for v in g_crop))

"""Procedural renderer of the synthetic paired try-on set (numpy + PIL only).

One example is one person (body proportions, skin, hair, a textured upper garment, plain
pants/shorts/skirt, shoes) drawn in two independently sampled poses A and B. The garment's texture
is a function of *cloth coordinates* attached to the body: the torso is an elliptic cylinder around
a (slightly bent) spine, parametrised by the arc angle around it and the normalised length along
it; each sleeve is a cylinder around the arm bones. Lean, bend, yaw (the cylinder turns, so the
pattern slides and foreshortens non-linearly), per-pose body width, arm-raise bunching and the arm
angles therefore warp the pattern between the poses the way a worn shirt deforms, which is what the
Parallel-UNet's implicit warping has to learn. Pose-dependent wrinkle shading adds non-rigid change.

Every person faces the camera: the person's LEFT side (BODY_25 5/6/7/12/13/14, parse ids 14, 16,
18) is on the IMAGE'S RIGHT (larger x). Parse ids are the CIHP/LIP ids VITON-HD uses (`LABELS`).
Pixel (row i, column j) has its centre at (x, y) = (j, i); keypoints use the same coordinates.
Garment patterns and prints live in synthetic_garment.py.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from tryon_jax.data.synthetic_garment import (Garment, bilinear, coverage, noise_garment,
                                              random_colour, sample_garment)

# CIHP/LIP parse ids as written to image-parse-v3 (10 = neck / exposed skin, as VITON-HD uses it).
LABELS = {
    "background": 0, "hair": 2, "upper_clothes": 5, "pants": 9, "neck": 10, "skirt": 12,
    "face": 13, "left_arm": 14, "right_arm": 15, "left_leg": 16, "right_leg": 17,
    "left_shoe": 18, "right_shoe": 19,
}
NUM_BODY25 = 25
# BODY_25 indices used below (OpenPose order).
NOSE, NECK, RSHO, RELB, RWRI, LSHO, LELB, LWRI, MIDHIP = 0, 1, 2, 3, 4, 5, 6, 7, 8
RHIP, RKNE, RANK, LHIP, LKNE, LANK, REYE, LEYE, REAR, LEAR = 9, 10, 11, 12, 13, 14, 15, 16, 17, 18
LBIGTOE, LSMALLTOE, LHEEL, RBIGTOE, RSMALLTOE, RHEEL = 19, 20, 21, 22, 23, 24

# Generator design constants (procedural art, not model hyper-parameters). Lengths are in "body
# units": 1 unit ~ standing height from the top of the head to the soles.
_HEIGHT_FILL = (0.78, 0.93)  # person height / image height; varies scale per pose.
_X_JITTER = 0.06  # horizontal placement jitter, fraction of image width.
_TOP_MARGIN = (0.02, 0.07)  # head-top position, fraction of image height.
_MIN_POSE_SHIFT = 0.04  # mean keypoint move between poses A and B, fraction of image height.
_CROSS_ARM_PROB = 0.3  # fraction of examples where one pose has a forearm across the torso.
_NOISE_STREAM = 1  # render_example's noise draws: a stream of their own, so the rest is unchanged
_SAME_BACKGROUND_PROB = 0.5  # otherwise pose A and pose B get different backgrounds.
_ARM_MODES = ("down", "down", "out", "out", "hip", "up")  # per-arm pose families (sampled evenly).

_SKIN_TONES = np.array([[0.97, 0.82, 0.71], [0.87, 0.67, 0.53], [0.72, 0.52, 0.38],
                        [0.52, 0.35, 0.24], [0.33, 0.21, 0.14]], np.float32)
_HAIR_COLOURS = np.array([[0.07, 0.06, 0.06], [0.22, 0.13, 0.08], [0.42, 0.27, 0.15],
                          [0.83, 0.70, 0.44], [0.58, 0.24, 0.11], [0.66, 0.66, 0.66]], np.float32)


# ----------------------------------------------------------------------------- small helpers
def _rot(v: np.ndarray, angle: float) -> np.ndarray:
  """Rotates 2-vectors [..., 2] by `angle` (image coords: +angle turns +y towards -x)."""
  c, s = np.cos(angle), np.sin(angle)
  return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], -1)


# ----------------------------------------------------------------------------- the canvas
class _Canvas:
  """RGB [H, W, 3] float32 in [0, 1] and parse labels [H, W] uint8, painted back to front."""

  def __init__(self, background: np.ndarray):
    self.rgb = background.copy()
    self.height, self.width = background.shape[:2]
    self.label = np.zeros((self.height, self.width), np.uint8)
    self.aa = 1.0  # edge softness in pixels.

  def window(self, points: np.ndarray, pad: float):
    """Pixel grid covering points [N, 2] +- pad: (row slice, col slice, xs [1,w], ys [h,1])."""
    x0 = max(int(np.floor(points[:, 0].min() - pad)), 0)
    x1 = min(int(np.ceil(points[:, 0].max() + pad)) + 1, self.width)
    y0 = max(int(np.floor(points[:, 1].min() - pad)), 0)
    y1 = min(int(np.ceil(points[:, 1].max() + pad)) + 1, self.height)
    if x1 <= x0 or y1 <= y0:
      return None
    xs = np.arange(x0, x1, dtype=np.float32)[None, :]
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    return (slice(y0, y1), slice(x0, x1), xs, ys)

  def paint(self, win, signed_distance: np.ndarray, colour: np.ndarray, label: int) -> None:
    """Blends colour ([3] or [h, w, 3]) where signed_distance > -aa/2; labels where > 0."""
    rows, cols = win[0], win[1]
    alpha = coverage(signed_distance, self.aa)
    region = self.rgb[rows, cols]
    region += alpha * (colour - region)
    self.label[rows, cols][signed_distance > 0] = label


# ----------------------------------------------------------------------------- primitives
def _segment_frame(xs, ys, a, b):
  """Per-pixel (t unclipped, distance to segment, signed side distance) for segment a->b."""
  d = b - a
  length = max(float(np.hypot(*d)), 1e-6)
  qx, qy = xs - a[0], ys - a[1]
  t = (qx * d[0] + qy * d[1]) / (length * length)
  tc = np.clip(t, 0.0, 1.0)
  dist = np.hypot(qx - tc * d[0], qy - tc * d[1])
  side = (qx * d[1] - qy * d[0]) / length
  return t, tc, dist, side


def _skin_shade(side: np.ndarray, radius: np.ndarray) -> np.ndarray:
  return (0.8 + 0.2 * np.sqrt(np.clip(1 - (side / radius) ** 2, 0, 1)))[..., None]


def _capsule(cv: _Canvas, a, b, ra: float, rb: float, colour, label: int) -> None:
  win = cv.window(np.stack([a, b]), max(ra, rb) + 1)
  if win is None:
    return
  _, tc, dist, side = _segment_frame(win[2], win[3], a, b)
  radius = ra + (rb - ra) * tc
  cv.paint(win, radius - dist, colour * _skin_shade(side, radius), label)


def _ellipse(cv: _Canvas, centre, rx: float, ry: float, angle: float, colour, label: int,
             y_max: float | None = None, y_min: float | None = None) -> None:
  """Rotated ellipse; y_max / y_min clip it in its own frame (units of ry) for hair lines."""
  win = cv.window(centre[None], max(rx, ry) + 1)
  if win is None:
    return
  local = _rot(np.stack(np.broadcast_arrays(win[2] - centre[0], win[3] - centre[1]), -1), -angle)
  u, v = local[..., 0] / rx, local[..., 1] / ry
  sd = (1 - np.sqrt(u * u + v * v)) * min(rx, ry)
  if y_max is not None:
    sd = np.minimum(sd, (y_max - v) * ry)
  if y_min is not None:
    sd = np.minimum(sd, (v - y_min) * ry)
  cv.paint(win, sd, colour, label)


# ----------------------------------------------------------------------------- identity, pose
@dataclasses.dataclass
class Identity:
  """Everything that stays the same between the two poses of one example."""
  skin: np.ndarray
  hair: np.ndarray
  hair_long: bool
  hairline: float  # fringe line in head frame (units of head ry, negative = above centre)
  head_r: float
  neck_len: float
  neck_r: float
  torso_len: float
  shoulder_half: float
  waist_half: float
  hip_half: float
  upper_arm: float
  lower_arm: float
  arm_r: float
  upper_leg: float
  lower_leg: float
  leg_r: float
  lower_kind: str  # "pants", "shorts" or "skirt"
  lower_colour: np.ndarray
  lower_length: float  # shorts: fraction of thigh; skirt: body units below the waist
  shoe_colour: np.ndarray
  garment: Garment


def sample_identity(rng: np.random.Generator, texels_per_unit: float,
                    pattern_scale: float = 1.0, flat_garment: bool = False) -> Identity:
  k = rng.uniform(0, len(_SKIN_TONES) - 1)
  i = int(k)
  skin = _SKIN_TONES[i] + (k - i) * (_SKIN_TONES[min(i + 1, len(_SKIN_TONES) - 1)] - _SKIN_TONES[i])
  hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * rng.uniform(0.85, 1.15)
  build = rng.uniform(0.9, 1.12)
  lower_kind = str(rng.choice(["pants", "pants", "shorts", "skirt"]))
  lower_colour = (np.array([0.2, 0.28, 0.45], np.float32) * rng.uniform(0.7, 1.4)
                  if rng.random() < 0.4 else random_colour(rng) * rng.uniform(0.5, 0.9))
  return Identity(
      skin=skin.astype(np.float32), hair=np.clip(hair, 0, 1).astype(np.float32),
      hair_long=bool(rng.random() < 0.4), hairline=float(rng.uniform(-0.6, -0.3)),
      head_r=float(rng.uniform(0.058, 0.066)), neck_len=float(rng.uniform(0.035, 0.05)),
      neck_r=float(rng.uniform(0.022, 0.028) * build), torso_len=float(rng.uniform(0.28, 0.32)),
      shoulder_half=float(rng.uniform(0.1, 0.118) * build),
      waist_half=float(rng.uniform(0.072, 0.088) * build),
      hip_half=float(rng.uniform(0.08, 0.095) * build),
      upper_arm=float(rng.uniform(0.155, 0.175)), lower_arm=float(rng.uniform(0.135, 0.155)),
      arm_r=float(rng.uniform(0.026, 0.032) * build), upper_leg=float(rng.uniform(0.22, 0.245)),
      lower_leg=float(rng.uniform(0.21, 0.235)), leg_r=float(rng.uniform(0.04, 0.05) * build),
      lower_kind=lower_kind, lower_colour=np.clip(lower_colour, 0, 1).astype(np.float32),
      lower_length=float(rng.uniform(0.45, 0.85) if lower_kind == "shorts"
                         else rng.uniform(0.18, 0.35)),
      shoe_colour=random_colour(rng) * rng.uniform(0.3, 1.0), garment=sample_garment(
          rng, texels_per_unit, pattern_scale, flat=flat_garment))


@dataclasses.dataclass
class Pose:
  """Everything that differs between the two renders of one person (angles in radians)."""
  fill: float
  x_shift: float
  top: float
  lean: float
  yaw: float
  bend: float
  width: float
  head_tilt: float
  head_yaw: float
  shrug: tuple[float, float]
  arm_abduction: tuple[float, float]  # (right, left); 0 = hanging down, + = away from the body
  arm_flexion: tuple[float, float]  # elbow; + = forearm turns towards the body's midline
  leg_abduction: tuple[float, float]
  knee_flexion: tuple[float, float]
  crossing_arm: int  # -1 none, 0 right, 1 left: that arm is drawn last, across the torso
  wrinkle_phase: tuple[float, float]
  wrinkle_angle: float


def _sample_arm(rng: np.random.Generator, mode: str) -> tuple[float, float]:
  if mode == "down":
    return rng.uniform(0.06, 0.45), rng.uniform(-0.1, 0.5)
  if mode == "out":
    return rng.uniform(0.5, 1.4), rng.uniform(-0.3, 1.0)
  if mode == "hip":
    return rng.uniform(0.55, 0.8), rng.uniform(1.8, 2.2)
  if mode == "up":
    return rng.uniform(1.6, 2.5), rng.uniform(-0.4, 0.5)
  return rng.uniform(0.0, 0.25), rng.uniform(1.4, 2.2)  # "cross": forearm across the torso


def sample_pose(rng: np.random.Generator, crossing: bool) -> Pose:
  crossing_arm = int(rng.integers(2)) if crossing else -1
  arms = [_sample_arm(rng, "cross" if side == crossing_arm else
                      _ARM_MODES[rng.integers(len(_ARM_MODES))]) for side in range(2)]
  return Pose(
      fill=rng.uniform(*_HEIGHT_FILL), x_shift=rng.uniform(-_X_JITTER, _X_JITTER),
      top=rng.uniform(*_TOP_MARGIN), lean=rng.uniform(-0.14, 0.14), yaw=rng.uniform(-0.55, 0.55),
      bend=rng.uniform(-0.06, 0.06), width=rng.uniform(0.92, 1.08),
      head_tilt=rng.uniform(-0.2, 0.2), head_yaw=rng.uniform(-0.25, 0.25),
      shrug=(rng.uniform(-0.015, 0.015), rng.uniform(-0.015, 0.015)),
      arm_abduction=(arms[0][0], arms[1][0]), arm_flexion=(arms[0][1], arms[1][1]),
      leg_abduction=(rng.uniform(-0.02, 0.2), rng.uniform(-0.02, 0.2)),
      knee_flexion=(rng.uniform(-0.1, 0.15), rng.uniform(-0.1, 0.15)),
      crossing_arm=crossing_arm,
      wrinkle_phase=(rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)),
      wrinkle_angle=rng.uniform(-0.8, 0.8))


@dataclasses.dataclass
class Skeleton:
  """Joint positions in pixels for one (identity, pose, image size)."""
  kp: np.ndarray  # [25, 2] BODY_25 positions (before visibility)
  unit: float  # pixels per body unit
  axis: np.ndarray  # torso axis (neck -> mid-hip), unit vector
  perp: np.ndarray  # towards the person's left (image right when upright)
  head_centre: np.ndarray
  head_angle: float
  hands: np.ndarray  # [2, 2] hand tips (right, left)
  shoes: np.ndarray  # [2, 2] shoe centres (right, left)


def build_skeleton(idt: Identity, pose: Pose, width: int, height: int) -> Skeleton:
  unit = pose.fill * height / 0.98
  axis = _rot(np.array([0.0, 1.0]), pose.lean)
  perp = np.array([axis[1], -axis[0]])
  down = np.array([0.0, 1.0])
  kp = np.zeros((NUM_BODY25, 2))
  kp[NECK] = 0.0
  kp[MIDHIP] = idt.torso_len * axis
  width_f = pose.width * np.sqrt(np.cos(pose.yaw) ** 2 + (0.6 * np.sin(pose.yaw)) ** 2)
  sho = idt.shoulder_half * width_f - 0.6 * idt.arm_r
  hip = idt.hip_half * width_f * 0.62
  for side, (s_i, e_i, w_i, h_i, k_i, a_i) in enumerate(
      [(RSHO, RELB, RWRI, RHIP, RKNE, RANK), (LSHO, LELB, LWRI, LHIP, LKNE, LANK)]):
    out = -1.0 if side == 0 else 1.0  # image-x direction pointing away from the body
    kp[s_i] = (0.035 + pose.shrug[side]) * axis + out * sho * perp
    upper = _rot(axis, -out * pose.arm_abduction[side])
    fore = _rot(upper, out * pose.arm_flexion[side])
    kp[e_i] = kp[s_i] + idt.upper_arm * upper
    kp[w_i] = kp[e_i] + idt.lower_arm * fore
    kp[h_i] = kp[MIDHIP] + out * hip * perp
    thigh = _rot(down, -out * pose.leg_abduction[side])
    shin = _rot(thigh, out * pose.knee_flexion[side])
    kp[k_i] = kp[h_i] + idt.upper_leg * thigh
    kp[a_i] = kp[k_i] + idt.lower_leg * shin
  head_angle = pose.lean * 0.5 + pose.head_tilt
  head_up = _rot(np.array([0.0, -1.0]), head_angle)
  head_right = np.array([-head_up[1], head_up[0]])  # image-right in the head frame
  head_centre = kp[NECK] + (idt.neck_len + idt.head_r) * head_up
  rx, ry = 0.78 * idt.head_r, idt.head_r
  shift = np.sin(pose.head_yaw + 0.6 * pose.yaw) * 0.55 * rx
  kp[NOSE] = head_centre + shift * head_right - 0.22 * ry * head_up
  kp[REYE] = head_centre + (shift - 0.36 * rx) * head_right + 0.08 * ry * head_up
  kp[LEYE] = head_centre + (shift + 0.36 * rx) * head_right + 0.08 * ry * head_up
  kp[REAR] = head_centre + (0.3 * shift - 0.97 * rx) * head_right
  kp[LEAR] = head_centre + (0.3 * shift + 0.97 * rx) * head_right
  fore_dirs = [(kp[RWRI] - kp[RELB]) / idt.lower_arm, (kp[LWRI] - kp[LELB]) / idt.lower_arm]
  hands = np.stack([kp[RWRI] + 0.065 * fore_dirs[0], kp[LWRI] + 0.065 * fore_dirs[1]])
  foot = 0.022
  shoes = np.stack([kp[RANK] + [-0.012, foot], kp[LANK] + [0.012, foot]])
  for (big, small, heel), centre, out in [((RBIGTOE, RSMALLTOE, RHEEL), shoes[0], -1.0),
                                          ((LBIGTOE, LSMALLTOE, LHEEL), shoes[1], 1.0)]:
    kp[big] = centre + [-out * 0.01, 0.013]
    kp[small] = centre + [out * 0.022, 0.01]
    kp[heel] = centre + [0.0, -0.006]
  # Place: head top at pose.top * height, mid-hip at the centre column +- jitter.
  head_top = head_centre + idt.head_r * head_up
  origin = np.array([width * (0.5 + pose.x_shift) - kp[MIDHIP, 0] * unit,
                     pose.top * height - head_top[1] * unit])
  place = lambda p: p * unit + origin
  return Skeleton(kp=place(kp), unit=unit, axis=axis, perp=perp,
                  head_centre=place(head_centre), head_angle=float(head_angle),
                  hands=place(hands), shoes=place(shoes))


def _segment_distance(p0, p1, q0, q1) -> float:
  """Minimum distance between two 2D segments (sampled; exact enough for rejection tests)."""
  s = np.linspace(0, 1, 9)[:, None]
  a = p0 + s * (p1 - p0)
  b = q0 + s * (q1 - q0)
  return float(np.min(np.hypot(*(a[:, None] - b[None]).transpose(2, 0, 1))))


def pose_is_clean(idt: Identity, sk: Skeleton) -> bool:
  """Rejects poses where an arm covers the face or the two arms overlap (keypoints stay visible)."""
  kp, u = sk.kp, sk.unit
  arms = [(kp[RSHO], kp[RELB], kp[RWRI], sk.hands[0]), (kp[LSHO], kp[LELB], kp[LWRI], sk.hands[1])]
  arm_r = idt.arm_r * 1.3 * idt.garment.looseness * u
  for arm in arms:
    for a, b in zip(arm[1:-1], arm[2:]):
      if _segment_distance(a, b, sk.head_centre, sk.head_centre) < idt.head_r * 1.25 * u + arm_r:
        return False
    if _segment_distance(arm[0], arm[1], sk.head_centre, sk.head_centre) < idt.head_r * u + arm_r:
      return False
  for a0, a1 in zip(arms[0][:-1], arms[0][1:]):
    for b0, b1 in zip(arms[1][:-1], arms[1][1:]):
      if _segment_distance(a0, a1, b0, b1) < 2.2 * arm_r:
        return False
  return True


# ----------------------------------------------------------------------------- drawing
def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
  ys = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
  xs = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
  c0, c1 = random_colour(rng), random_colour(rng)
  if rng.random() < 0.6:  # mostly calm, light studio-like backgrounds
    c0 = 0.55 * c0 + 0.45 * np.float32(rng.uniform(0.7, 1.0))
  kind = rng.integers(4)
  if kind == 0:
    img = np.broadcast_to(c0, (height, width, 3))
  elif kind == 1:
    img = c0 + ys * (c1 - c0) * 0.6
  elif kind == 2:  # wall + floor
    horizon = rng.uniform(0.7, 0.9)
    img = np.where(ys < horizon, c0 * (0.9 + 0.1 * ys), c1 * (0.6 + 0.3 * ys))
  else:  # soft panels
    period = rng.uniform(0.15, 0.4)
    img = c0 * (0.9 + 0.1 * (np.mod(xs / period, 1.0) < 0.5)) + 0 * ys
  return np.ascontiguousarray(np.broadcast_to(img, (height, width, 3)), dtype=np.float32)


def _torso_width(idt: Identity, pose: Pose, t: np.ndarray) -> np.ndarray:
  """Half-width of the body [body units] at normalised spine position t (0 neck, 1 mid-hip)."""
  width_f = pose.width * np.sqrt(np.cos(pose.yaw) ** 2 + (0.6 * np.sin(pose.yaw)) ** 2)
  knots = np.array([0.0, 0.15, 0.6, 1.0, 1.2])
  half = np.array([idt.shoulder_half * 0.97, idt.shoulder_half * 0.95, idt.waist_half,
                   idt.hip_half, idt.hip_half * 1.02])
  return np.interp(t, knots, half) * width_f


def _draw_shirt(cv: _Canvas, idt: Identity, pose: Pose, sk: Skeleton, raise_lift: float) -> None:
  g, u = idt.garment, sk.unit
  neck, axis, perp, length = sk.kp[NECK], sk.axis, sk.perp, idt.torso_len * u
  hem = g.hem - raise_lift
  wmax = idt.shoulder_half * 1.2 * g.looseness * u
  corners = np.stack([neck - 0.06 * length * axis, neck + hem * 1.05 * length * axis])
  win = cv.window(corners, wmax + abs(pose.bend) * length + 2)
  if win is None:
    return
  qx, qy = win[2] - neck[0], win[3] - neck[1]
  t = (qx * axis[0] + qy * axis[1]) / length
  offset = pose.bend * 4 * t * (1 - t) * length
  half = _torso_width(idt, pose, t) * g.looseness * u * (1 + 0.04 * np.clip(t - 0.7, 0, 1))
  s = ((qx * perp[0] + qy * perp[1]) - offset) / half
  top = -0.04 + 0.1 * s * s  # sloping shoulders
  bottom = hem + 0.02 * s * s
  sd = np.minimum.reduce([(t - top) * length, (bottom - t) * length, (1 - np.abs(s)) * half])
  # Cloth coordinates: around = arc on an elliptic cylinder turned by the yaw; down = spine length
  # (the shirt bunches when the arms are raised, so the rest length maps to a shorter span).
  theta = np.arcsin(np.clip(s, -1, 1)) + pose.yaw
  radius = idt.shoulder_half * 0.9
  x_cloth = theta * radius
  y_cloth = t * idt.torso_len * (g.hem / hem)
  aa = 1.0 / u
  colour = g.colour(x_cloth, y_cloth, aa)
  if g.decal is not None:
    dw, dh = g.decal_size
    dx = x_cloth / dw + 0.5
    dy = (y_cloth - g.decal_y * idt.torso_len) / dh + 0.5
    h, w = g.decal.shape[:2]
    inside = (dx >= 0) & (dx <= 1) & (dy >= 0) & (dy <= 1) & (sd > -1)
    rgba = bilinear(g.decal, dx[inside] * w - 0.5, dy[inside] * h - 0.5, wrap=False)
    colour[inside] += rgba[:, 3:] * (rgba[:, :3] - colour[inside])
  cv.paint(win, sd, colour * _cloth_shade(s, x_cloth, y_cloth, pose), LABELS["upper_clothes"])


def _cloth_shade(s: np.ndarray, x: np.ndarray, y: np.ndarray, pose: Pose) -> np.ndarray:
  """Cylinder shading times pose-dependent wrinkles (differ between poses: non-rigid change)."""
  ca, sa = np.cos(pose.wrinkle_angle), np.sin(pose.wrinkle_angle)
  w1 = np.sin((x * ca + y * sa) * 90.0 + pose.wrinkle_phase[0])
  w2 = np.sin((x * sa - y * ca) * 55.0 + pose.wrinkle_phase[1])
  folds = 1.0 - 0.07 * np.maximum(w1, 0) ** 2 - 0.05 * np.maximum(w2, 0) ** 2
  cyl = 0.74 + 0.26 * np.sqrt(np.clip(1 - s * s, 0, 1))
  return (cyl * folds)[..., None]


def _draw_sleeve(cv: _Canvas, idt: Identity, pose: Pose, sk: Skeleton, side: int) -> None:
  g, u = idt.garment, sk.unit
  s_i, e_i, w_i = (RSHO, RELB, RWRI) if side == 0 else (LSHO, LELB, LWRI)
  shoulder, elbow, wrist = sk.kp[s_i], sk.kp[e_i], sk.kp[w_i]
  r0 = idt.arm_r * 1.35 * g.looseness * u
  r1 = idt.arm_r * (1.2 if g.long_sleeves else 1.3) * g.looseness * u
  if g.long_sleeves:
    parts = [(shoulder, elbow, r0, r1, 0.0, idt.upper_arm, False),
             (elbow, elbow + 0.9 * (wrist - elbow), r1, r1 * 0.85, idt.upper_arm,
              0.9 * idt.lower_arm, True)]
  else:
    end = shoulder + g.sleeve_fraction * (elbow - shoulder)
    parts = [(shoulder, end, r0, r1, 0.0, g.sleeve_fraction * idt.upper_arm, True)]
  seam = 0.5 if side == 0 else -0.5  # sleeves start their pattern at different phases
  for a, b, ra, rb, y0, span, cuff in parts:
    win = cv.window(np.stack([a, b]), max(ra, rb) + 2)
    if win is None:
      continue
    t, tc, dist, side_d = _segment_frame(win[2], win[3], a, b)
    radius = ra + (rb - ra) * tc
    sd = radius - dist
    if cuff:
      sd = np.minimum(sd, (1 - t) * np.hypot(*(b - a)))
    s = side_d / radius
    x_cloth = (np.arcsin(np.clip(s, -1, 1)) + seam) * (radius / u)
    y_cloth = y0 + tc * span
    colour = g.colour(x_cloth, y_cloth, 1.0 / u)
    cv.paint(win, sd, colour * _cloth_shade(s, x_cloth, y_cloth, pose), LABELS["upper_clothes"])


def _draw_arm(cv: _Canvas, idt: Identity, pose: Pose, sk: Skeleton, side: int) -> None:
  s_i, e_i, w_i = (RSHO, RELB, RWRI) if side == 0 else (LSHO, LELB, LWRI)
  label = LABELS["right_arm"] if side == 0 else LABELS["left_arm"]
  r = idt.arm_r * sk.unit
  _capsule(cv, sk.kp[s_i], sk.kp[e_i], r, 0.85 * r, idt.skin, label)
  _capsule(cv, sk.kp[e_i], sk.kp[w_i], 0.85 * r, 0.68 * r, idt.skin, label)
  _capsule(cv, sk.kp[w_i], sk.hands[side], 0.8 * r, 0.75 * r, idt.skin * 0.97, label)
  _draw_sleeve(cv, idt, pose, sk, side)


def _draw_lower(cv: _Canvas, idt: Identity, sk: Skeleton) -> None:
  u, lower = sk.unit, idt.lower_colour
  legs = [(RHIP, RKNE, RANK, "right_leg"), (LHIP, LKNE, LANK, "left_leg")]
  r = idt.leg_r * u
  for h_i, k_i, a_i, name in legs:  # skin legs (visible under shorts / skirt)
    _capsule(cv, sk.kp[h_i], sk.kp[k_i], r, 0.75 * r, idt.skin, LABELS[name])
    _capsule(cv, sk.kp[k_i], sk.kp[a_i], 0.75 * r, 0.5 * r, idt.skin, LABELS[name])
  for side, name in enumerate(["right_shoe", "left_shoe"]):
    _ellipse(cv, sk.shoes[side], 0.03 * u, 0.02 * u, 0.0, idt.shoe_colour, LABELS[name])
  waist = sk.kp[MIDHIP] - 0.12 * idt.torso_len * u * sk.axis
  if idt.lower_kind == "skirt":
    length = idt.lower_length * u
    top, bottom = idt.hip_half * 1.05 * u, idt.hip_half * 1.05 * u + 0.45 * length
    win = cv.window(np.stack([waist, waist + length * sk.axis]), bottom + 2)
    if win is None:
      return
    qx, qy = win[2] - waist[0], win[3] - waist[1]
    v = qx * sk.axis[0] + qy * sk.axis[1]
    across = np.abs(qx * sk.perp[0] + qy * sk.perp[1])
    sd = np.minimum.reduce([v, length - v, top + (bottom - top) * v / length - across])
    pleats = 0.9 + 0.1 * np.cos(across / (0.02 * u) * np.pi)[..., None]
    cv.paint(win, sd, lower * pleats, LABELS["skirt"])
    return
  for h_i, k_i, a_i, _ in legs:
    if idt.lower_kind == "pants":
      _capsule(cv, sk.kp[h_i], sk.kp[k_i], 1.12 * r, 0.9 * r, lower, LABELS["pants"])
      _capsule(cv, sk.kp[k_i], sk.kp[a_i] + [0, 0.005 * u], 0.9 * r, 0.75 * r, lower,
               LABELS["pants"])
    else:
      end = sk.kp[h_i] + idt.lower_length * (sk.kp[k_i] - sk.kp[h_i])
      _capsule(cv, sk.kp[h_i], end, 1.15 * r, 1.05 * r, lower, LABELS["pants"])
  hips = np.stack([sk.kp[RHIP], sk.kp[LHIP]])
  _capsule(cv, waist, hips.mean(0) + 0.5 * r * sk.axis, idt.hip_half * u, 0.5 * idt.hip_half * u,
           lower, LABELS["pants"])  # pelvis: closes the gap between the thighs


def _draw_head(cv: _Canvas, idt: Identity, pose: Pose, sk: Skeleton, behind: bool) -> None:
  u, hc, ang = sk.unit, sk.head_centre, sk.head_angle
  rx, ry = 0.78 * idt.head_r * u, idt.head_r * u
  up = _rot(np.array([0.0, -1.0]), ang)
  hair_centre = hc + 0.12 * ry * up
  if behind:
    if idt.hair_long:  # long hair hangs straight down behind the neck and shoulders
      _capsule(cv, hc, hc + np.array([0.0, 2.6 * ry]), 1.1 * rx, 1.15 * rx, idt.hair,
               LABELS["hair"])
    return
  neck = sk.kp[NECK]
  _capsule(cv, neck, hc, idt.neck_r * u, idt.neck_r * u, idt.skin * 0.92, LABELS["neck"])
  depth = idt.garment.neckline_depth * u
  _ellipse(cv, neck + 0.3 * depth * sk.axis, idt.neck_r * 1.6 * u, max(depth, 1.0), pose.lean,
           idt.skin * 0.9, LABELS["neck"])
  _ellipse(cv, hair_centre, 1.12 * rx, 1.06 * ry, ang, idt.hair, LABELS["hair"], y_max=0.25)
  _ellipse(cv, hc, rx, ry, ang, idt.skin, LABELS["face"])
  _ellipse(cv, hair_centre, 1.12 * rx, 1.06 * ry, ang, idt.hair, LABELS["hair"],
           y_max=idt.hairline)
  dark = np.array([0.1, 0.08, 0.08], np.float32)
  for eye in (sk.kp[REYE], sk.kp[LEYE]):
    _ellipse(cv, eye, 0.11 * rx, 0.07 * ry, ang, dark, LABELS["face"])
  _ellipse(cv, sk.kp[NOSE], 0.09 * rx, 0.06 * ry, ang, idt.skin * 0.8, LABELS["face"])
  mouth = sk.kp[NOSE] - 0.32 * ry * up
  _ellipse(cv, mouth, 0.28 * rx, 0.06 * ry, ang, np.array([0.6, 0.25, 0.25], np.float32),
           LABELS["face"])


def render(idt: Identity, pose: Pose, background: np.ndarray):
  """Draws one person. Returns rgb [H, W, 3] uint8, parse [H, W] uint8, keypoints [25, 3].

  Keypoints are BODY_25 (x, y, c) in pixels; points outside the image get x = y = c = 0.
  """
  height, width = background.shape[:2]
  sk = build_skeleton(idt, pose, width, height)
  cv = _Canvas(background)
  raise_lift = 0.06 * max(0.0, max(pose.arm_abduction) - 1.2)
  _draw_head(cv, idt, pose, sk, behind=True)
  _draw_lower(cv, idt, sk)
  _draw_shirt(cv, idt, pose, sk, raise_lift)
  _draw_head(cv, idt, pose, sk, behind=False)
  order = [0, 1] if pose.crossing_arm != 0 else [1, 0]  # the crossing arm goes in front
  for side in order:
    _draw_arm(cv, idt, pose, sk, side)
  rgb = np.clip(cv.rgb * 255 + 0.5, 0, 255).astype(np.uint8)
  keypoints = np.zeros((NUM_BODY25, 3), np.float32)
  inside = ((sk.kp[:, 0] >= 0) & (sk.kp[:, 0] <= width - 1) &
            (sk.kp[:, 1] >= 0) & (sk.kp[:, 1] <= height - 1))
  keypoints[inside, :2] = sk.kp[inside]
  keypoints[inside, 2] = 1.0
  return rgb, cv.label, keypoints


# ----------------------------------------------------------------------------- examples
@dataclasses.dataclass
class Example:
  """One synthetic pair: person (pose B, the try-on target) and cloth (pose A, same garment)."""
  person: np.ndarray  # [H, W, 3] uint8
  person_parse: np.ndarray  # [H, W] uint8 (LABELS ids)
  person_keypoints: np.ndarray  # [25, 3] float32 BODY_25 (x, y, c)
  cloth: np.ndarray  # [H, W, 3] uint8
  cloth_parse: np.ndarray  # [H, W] uint8
  cloth_keypoints: np.ndarray  # [25, 3] float32
  cloth_mask: np.ndarray  # [H, W] uint8, 255 where cloth_parse is upper-clothes
  meta: dict


def image_size(resolution: int) -> tuple[int, int]:
  """(width, height) = (R * 3/4, R), VITON-HD's aspect ratio."""
  if resolution < 32 or resolution % 4:
    raise ValueError(f"resolution must be a multiple of 4 and >= 32, got {resolution}")
  return resolution * 3 // 4, resolution


def example_rng(seed: int, split: str, index: int) -> np.random.Generator:
  """Independent stream per (seed, split, index): examples can be made in any order or parallel."""
  if seed < 0 or index < 0:
    raise ValueError(f"seed and index must be >= 0, got seed={seed} index={index}")
  return np.random.default_rng([seed, zlib.crc32(split.encode()), index])


def _noise_rng(seed: int, split: str, index: int) -> np.random.Generator:
  return np.random.default_rng([seed, zlib.crc32(split.encode()), index, _NOISE_STREAM])


def wears_noise_garment(index: int, *, seed: int = 0, split: str = "train",
                        noise_garments: float) -> bool:
  """Whether render_example(index, ...) with this share gives the example a noise garment (its
  flat twin never wears one): the first draw of the example's noise stream, as render_example's."""
  return bool(_noise_rng(seed, split, index).random() < noise_garments)


def render_example(index: int, *, resolution: int = 256, seed: int = 0, split: str = "train",
                   pattern_scale: float = 1.0, flat_garment: bool = False,
                   same_pose: bool = False, noise_garments: float = 0.0) -> Example:
  """Renders example `index` deterministically from (seed, split, index).

  pattern_scale: the garment's pattern period and print tile are this many times the default
  (synthetic_garment.sample_garment); everything else about the example is unchanged.
  flat_garment: the example's flat twin, the same garment without pattern or prints (the same
  draws; every other pixel, and the garment's outline and shading, are the same).
  same_pose: the cloth image shows the garment in the person's own pose B (the same draws: the
  person image is unchanged), so no pose changes between the two: a control for how much of a
  try-on study's difficulty is the pose change.
  noise_garments: the share of examples whose garment wears noise instead of its pattern
  (synthetic_garment.noise_garment; the same cut, person and poses). Which examples, and their
  noise, come from a stream of their own: every other draw, and every other example, is
  unchanged. A flat twin stays flat.
  """
  if not 0.0 <= noise_garments <= 1.0:
    raise ValueError(f"noise_garments must be in [0, 1], got {noise_garments}")
  width, height = image_size(resolution)
  rng = example_rng(seed, split, index)
  idt = sample_identity(rng, texels_per_unit=2.0 * 0.88 * height, pattern_scale=pattern_scale,
                        flat_garment=flat_garment)
  noise_rng = _noise_rng(seed, split, index)  # its first draw is wears_noise_garment's
  if noise_rng.random() < noise_garments and not flat_garment:
    idt = dataclasses.replace(idt, garment=noise_garment(idt.garment, noise_rng, pattern_scale))
  crossing_pose = int(rng.integers(2)) if rng.random() < _CROSS_ARM_PROB else -1
  poses, skeletons = [], []
  for which in range(2):  # 0 = pose A (cloth image), 1 = pose B (person image)
    for _ in range(50):
      pose = sample_pose(rng, crossing=which == crossing_pose)
      sk = build_skeleton(idt, pose, width, height)
      moved = (which == 0 or np.mean(np.hypot(*(sk.kp - skeletons[0].kp).T))
               > _MIN_POSE_SHIFT * height)
      if pose_is_clean(idt, sk) and moved:
        break
    poses.append(pose)
    skeletons.append(sk)
  if same_pose:
    poses[0], skeletons[0] = poses[1], skeletons[1]
  bg_a = _background(rng, width, height)
  bg_b = bg_a if rng.random() < _SAME_BACKGROUND_PROB else _background(rng, width, height)
  cloth, cloth_parse, cloth_kp = render(idt, poses[0], bg_a)
  person, person_parse, person_kp = render(idt, poses[1], bg_b)
  mask = np.where(cloth_parse == LABELS["upper_clothes"], 255, 0).astype(np.uint8)
  meta = {"pattern": idt.garment.kind, "long_sleeves": idt.garment.long_sleeves,
          "lower": idt.lower_kind, "crossing_pose": crossing_pose,
          "same_pose": same_pose,
          # The pattern period in the person image's pixels (stripes, checks, dots; other kinds
          # have a period too, but it is not their visible scale).
          "pattern_period_px": idt.garment.period * skeletons[1].unit}
  return Example(person, person_parse, person_kp, cloth, cloth_parse, cloth_kp, mask, meta)

"""Label tables: human-parsing ids per dataset and the keypoint layout.

Parsing ids are the datasets' own (verified against the public VITON-HD / HR-VITON and DressCode
loaders, which test the same ids):
  * VITON-HD `image-parse-v3`: CIHP/LIP 20 classes; VITON-HD's parser writes torso skin / neck as 10
    (LIP calls 10 "jumpsuits"; VITON-HD's `get_parse_agnostic` treats 10 as the neck).
  * DressCode `label_maps/*_4.png`: ATR 18 classes (11 is the whole face/head skin).
Keypoints: OpenPose COCO-18. VITON-HD ships OpenPose BODY_25, mapped here by `BODY25_TO_COCO18`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# ---------------------------------------------------------------- parsing classes (index = id)
CIHP_CLASSES = (
    "background", "hat", "hair", "glove", "sunglasses", "upper_clothes", "dress", "coat", "socks",
    "pants", "torso_skin", "scarf", "skirt", "face", "left_arm", "right_arm", "left_leg",
    "right_leg", "left_shoe", "right_shoe")
ATR_CLASSES = (
    "background", "hat", "hair", "sunglasses", "upper_clothes", "skirt", "pants", "dress", "belt",
    "left_shoe", "right_shoe", "head", "left_leg", "right_leg", "left_arm", "right_arm", "bag",
    "scarf")


def _ids(classes: tuple[str, ...], *names: str) -> frozenset[int]:
  return frozenset(classes.index(n) for n in names)


@dataclasses.dataclass(frozen=True)
class LabelSet:
  """Which parsing ids play which role in preprocessing.

  garment: ids kept in I_c (everything else -> 0) and never shown in I_a.
  head, lower: ids pasted back into I_a (the paper's "head" and "lower body").
  left_arm, right_arm: ids whose pixels near the wrist count as hands (see preprocess.hand_mask).
  """
  name: str
  classes: tuple[str, ...]
  garment: frozenset[int]
  head: frozenset[int]
  lower: frozenset[int]
  left_arm: frozenset[int]
  right_arm: frozenset[int]


# VITON-HD try-on is upper-body: upper clothes, dress and coat are the garment (as HR-VITON's
# "upper" group 5, 6, 7). Neck/torso skin (10) and scarf (11) stay masked: their extent depends on
# the garment's collar. Gloves count as hand pixels.
_C = CIHP_CLASSES
VITON_HD = LabelSet(
    name="viton_hd",
    classes=_C,
    garment=_ids(_C, "upper_clothes", "dress", "coat"),
    head=_ids(_C, "hat", "hair", "sunglasses", "face"),
    lower=_ids(_C, "socks", "pants", "skirt", "left_leg", "right_leg", "left_shoe", "right_shoe"),
    left_arm=_ids(_C, "left_arm", "glove"),
    right_arm=_ids(_C, "right_arm", "glove"),
)

# DressCode: one label set per category. For lower-body garments the "lower" paste-back is the
# upper body (whatever is not the garment and not masked), so each category names what it keeps.
_A = ATR_CLASSES
_ATR_HEAD = _ids(_A, "hat", "hair", "sunglasses", "head")
DRESSCODE_UPPER = LabelSet(
    name="dresscode_upper_body", classes=_A,
    garment=_ids(_A, "upper_clothes"),
    head=_ATR_HEAD,
    lower=_ids(_A, "skirt", "pants", "belt", "left_shoe", "right_shoe", "left_leg", "right_leg"),
    left_arm=_ids(_A, "left_arm"), right_arm=_ids(_A, "right_arm"))
DRESSCODE_LOWER = LabelSet(
    name="dresscode_lower_body", classes=_A,
    garment=_ids(_A, "skirt", "pants"),
    head=_ATR_HEAD,
    # the kept "rest of the body" for a lower garment: upper clothes, arms and shoes.
    lower=_ids(_A, "upper_clothes", "left_arm", "right_arm", "left_shoe", "right_shoe"),
    left_arm=_ids(_A, "left_arm"), right_arm=_ids(_A, "right_arm"))
DRESSCODE_DRESSES = LabelSet(
    name="dresscode_dresses", classes=_A,
    garment=_ids(_A, "dress"),
    head=_ATR_HEAD,
    lower=_ids(_A, "left_shoe", "right_shoe"),
    left_arm=_ids(_A, "left_arm"), right_arm=_ids(_A, "right_arm"))

LABEL_SETS: dict[str, LabelSet] = {
    s.name: s for s in (VITON_HD, DRESSCODE_UPPER, DRESSCODE_LOWER, DRESSCODE_DRESSES)}
DRESSCODE_CATEGORIES = {
    "upper_body": DRESSCODE_UPPER, "lower_body": DRESSCODE_LOWER, "dresses": DRESSCODE_DRESSES}


def get_label_set(name: str) -> LabelSet:
  if name not in LABEL_SETS:
    raise ValueError(f"unknown label set {name!r}; known: {sorted(LABEL_SETS)}")
  return LABEL_SETS[name]


# ---------------------------------------------------------------- keypoints
COCO18_NAMES = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear")
NUM_KEYPOINTS = len(COCO18_NAMES)
# BODY_25 order: 0 nose, 1 neck, 2-4 right arm, 5-7 left arm, 8 mid-hip, 9-11 right leg,
# 12-14 left leg, 15/16 eyes, 17/18 ears, 19-24 feet. COCO-18 drops mid-hip and the feet.
BODY25_TO_COCO18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
COCO18_FLIP_PAIRS = ((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (14, 15), (16, 17))


def _flip_permutation() -> np.ndarray:
  perm = np.arange(NUM_KEYPOINTS)
  for a, b in COCO18_FLIP_PAIRS:
    perm[a], perm[b] = b, a
  return perm


# After a horizontal flip, new keypoint k is old keypoint COCO18_FLIP_PERM[k] (x mirrored).
COCO18_FLIP_PERM = _flip_permutation()
R_ELBOW, R_WRIST, L_ELBOW, L_WRIST = 3, 4, 6, 7
# Limbs for drawing the skeleton (contact sheets).
COCO18_LIMBS = (
    (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
    (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))

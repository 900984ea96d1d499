"""DressCode -> try-on records.

  python -m data_pipelines.dresscode --root DIR --split {train,test_paired,test_unpaired} \
      [--categories upper_body,lower_body,dresses] --out DIR

Layout read (DressCode's own, per category in upper_body / lower_body / dresses):
  <root>/<cat>/{train_pairs.txt, test_pairs_paired.txt, test_pairs_unpaired.txt}
                                            lines "XXXXXX_0.jpg YYYYYY_1.jpg" (extra columns ignored)
  <root>/<cat>/images/*_0.jpg person, *_1.jpg in-shop garment (lay-flat: garment pose absent)
  <root>/<cat>/label_maps/*_4.png           ATR label ids (labels.ATR_CLASSES)
  <root>/<cat>/keypoints/*_2.json           {"keypoints": 18 x [x, y, score, id]}, COCO-18, in a
                                            384 x 512 frame whatever the photo size (--keypoint-frame)
Garment mask: <root>/<cat>/cloth_mask/<garment>.png if present (some redistributions add it);
otherwise the near-white background connected to the image border is removed
(config.data.preprocess.background_threshold), which keeps white parts inside the garment.
Label maps with the photo's aspect ratio but another size are resized (nearest); others are skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from data_pipelines import _convert
from tryon_jax.data import labels
from tryon_jax.data import preprocess
from tryon_jax.data.preprocess import InputError

SOURCE = "dresscode"
PAIRS_FILES = {"train": "train_pairs.txt", "test_paired": "test_pairs_paired.txt",
               "test_unpaired": "test_pairs_unpaired.txt"}
KEYPOINT_FRAME = (384, 512)  # a fact of DressCode (its loader scales by width/384, height/512).


def background_mask(image: np.ndarray, threshold: int) -> np.ndarray:
  """Boolean [H, W]: near-white pixels connected to the image border (lay-flat backdrop)."""
  white = np.all(image >= threshold, axis=-1)
  # copy(): Pillow >= 12 may share the numpy buffer read-only, and floodfill then writes nothing.
  marks = Image.fromarray(np.where(white, 255, 0).astype(np.uint8)).copy()
  h, w = white.shape
  for x, y in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)):
    if marks.getpixel((x, y)) == 255:
      ImageDraw.floodfill(marks, (x, y), 128)
  return np.asarray(marks) == 128


@dataclasses.dataclass
class DressCodePair(_convert.Pair):
  cat_dir: str = ""
  category: str = ""
  person_file: str = ""
  garment_file: str = ""
  keypoint_frame: tuple[int, int] = KEYPOINT_FRAME

  def load(self, opts: preprocess.PreprocessOptions) -> _convert.Loaded:
    d, p, g = self.cat_dir, self.person_file, self.garment_file
    base = _convert.stem(p).rsplit("_", 1)[0]
    image = _convert.read_rgb(os.path.join(d, "images", p), "person image")
    parse = _convert.read_label_map(os.path.join(d, "label_maps", base + "_4.png"))
    h, w = image.shape[:2]
    if parse.shape != (h, w):
      if parse.shape[0] * w != parse.shape[1] * h:
        raise InputError(f"parse map is {parse.shape[1]}x{parse.shape[0]}, photo is {w}x{h}")
      parse = np.asarray(Image.fromarray(parse.astype(np.uint8)).resize((w, h), Image.NEAREST))
    fw, fh = self.keypoint_frame
    kps, kps_mask = preprocess.keypoints_from_dresscode(
        _convert.read_json(os.path.join(d, "keypoints", base + "_2.json")), (w / fw, h / fh),
        opts.keypoint_min_confidence)
    garment = _convert.read_rgb(os.path.join(d, "images", g), "garment image")
    mask_path = os.path.join(d, "cloth_mask", _convert.stem(g) + ".png")
    if os.path.exists(mask_path):
      mask = _convert.read_mask(mask_path, opts.garment_mask_threshold)
    else:
      mask = ~background_mask(garment, opts.background_threshold)
    return _convert.Loaded(
        label_set=labels.DRESSCODE_CATEGORIES[self.category], person_image=image,
        person_parse=parse, person_kps=kps, person_kps_mask=kps_mask, garment_image=garment,
        garment_mask=mask)


def list_pairs(root: str, split: str, categories: Sequence[str],
               keypoint_frame: tuple[int, int] = KEYPOINT_FRAME) -> list[_convert.Pair]:
  if split not in PAIRS_FILES:
    raise ValueError(f"split must be one of {sorted(PAIRS_FILES)}, got {split!r}")
  pairs: list[_convert.Pair] = []
  for cat in categories:
    if cat not in labels.DRESSCODE_CATEGORIES:
      raise ValueError(f"unknown DressCode category {cat!r}; known: "
                       f"{sorted(labels.DRESSCODE_CATEGORIES)}")
    cat_dir = os.path.join(root, cat)
    for n, tokens in _convert.read_pairs_file(os.path.join(cat_dir, PAIRS_FILES[split])):
      if len(tokens) < 2:
        pairs.append(_convert.BadPair(f"{cat}/{PAIRS_FILES[split]}:{n}", "", "",
                                      reason=f"pairs line {n}: want 'person garment', got {tokens}"))
        continue
      p, g = tokens[:2]
      p_id, g_id = f"{cat}/{_convert.stem(p)}", f"{cat}/{_convert.stem(g)}"
      pairs.append(DressCodePair(
          f"{p_id}__{_convert.stem(g)}", p_id, g_id, cat_dir=cat_dir, category=cat, person_file=p,
          garment_file=g, keypoint_frame=keypoint_frame))
  return pairs


def convert(root: str, split: str, out_dir: str, *, categories: Sequence[str] = tuple(
    labels.DRESSCODE_CATEGORIES), resolution: int = 1024, num_shards: int | None = None,
            fmt: str = "tfrecord", workers: int = 0, progress: bool = True,
            **option_overrides) -> dict:
  """Converts one DressCode split (all given categories into one set of shards); returns summary."""
  opts = _convert.make_options(resolution=resolution, **option_overrides)
  return _convert.convert_pairs(list_pairs(root, split, categories), out_dir, source=SOURCE,
                                split=split, opts=opts, num_shards=num_shards, fmt=fmt,
                                workers=workers, progress=progress)


def _add_args(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--root", required=True, help="DressCode root (holds the category folders)")
  parser.add_argument("--split", required=True, choices=sorted(PAIRS_FILES))
  parser.add_argument("--categories", default=",".join(labels.DRESSCODE_CATEGORIES),
                      help="comma-separated subset of upper_body,lower_body,dresses")
  parser.add_argument("--keypoint-frame", default="x".join(map(str, KEYPOINT_FRAME)),
                      help="WxH frame of the keypoint coordinates")


def _convert_from_args(args: argparse.Namespace, opts: preprocess.PreprocessOptions) -> dict:
  fw, fh = (int(v) for v in args.keypoint_frame.lower().split("x"))
  pairs = list_pairs(args.root, args.split, [c for c in args.categories.split(",") if c],
                     (fw, fh))
  return _convert.convert_pairs(pairs, args.out, source=SOURCE, split=args.split, opts=opts,
                                num_shards=args.num_shards, fmt=args.format, workers=args.workers,
                                progress=not args.no_progress)


def main(argv: Sequence[str] | None = None) -> int:
  return _convert.convert_cli(argv, __doc__.splitlines()[0], _add_args, _convert_from_args)


if __name__ == "__main__":
  sys.exit(main())

"""VITON-HD -> try-on records.

  python -m data_pipelines.viton_hd --root DIR --split {train,test} --out DIR [--resolution 1024]

Layout read (VITON-HD's own):
  <root>/<split>_pairs.txt                        lines "person.jpg cloth.jpg"
  <root>/<split>/image/<person>.jpg               person photo
  <root>/<split>/image-parse-v3/<person>.png      CIHP label ids, same size as the photo
  <root>/<split>/openpose_json/<person>_keypoints.json   OpenPose BODY_25
  <root>/<split>/cloth/<cloth>.jpg                garment image
  <root>/<split>/cloth-mask/<cloth>.jpg           garment mask (0 / 255)
Extension (our synthetic set): if <root>/<split>/cloth-openpose_json/<cloth>_keypoints.json exists,
the cloth image shows the garment worn and that file is its pose (garment pose present); otherwise
the garment is lay-flat and its pose is absent. I_c = cloth * cloth-mask in both cases.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Sequence

from data_pipelines import _convert
from tryon_jax.data import labels
from tryon_jax.data import preprocess

SOURCE = "viton_hd"


@dataclasses.dataclass
class VitonHDPair(_convert.Pair):
  split_dir: str = ""
  person_file: str = ""
  cloth_file: str = ""

  def load(self, opts: preprocess.PreprocessOptions) -> _convert.Loaded:
    d, p, c = self.split_dir, self.person_file, self.cloth_file
    p_stem, c_stem = _convert.stem(p), _convert.stem(c)
    image = _convert.read_rgb(os.path.join(d, "image", p), "person image")
    parse = _convert.read_label_map(os.path.join(d, "image-parse-v3", p_stem + ".png"))
    kps, kps_mask = preprocess.keypoints_from_openpose(
        _convert.read_json(os.path.join(d, "openpose_json", p_stem + "_keypoints.json")),
        opts.keypoint_min_confidence)
    cloth = _convert.read_rgb(os.path.join(d, "cloth", c), "cloth image")
    mask = _convert.read_mask(os.path.join(d, "cloth-mask", c), opts.garment_mask_threshold)
    g_kps = g_mask = None
    g_pose_path = os.path.join(d, "cloth-openpose_json", c_stem + "_keypoints.json")
    if os.path.exists(g_pose_path):
      g_kps, g_mask = preprocess.keypoints_from_openpose(
          _convert.read_json(g_pose_path, "garment keypoint JSON"), opts.keypoint_min_confidence)
    return _convert.Loaded(
        label_set=labels.VITON_HD, person_image=image, person_parse=parse, person_kps=kps,
        person_kps_mask=kps_mask, garment_image=cloth, garment_mask=mask, garment_kps=g_kps,
        garment_kps_mask=g_mask)


def list_pairs(root: str, split: str) -> list[_convert.Pair]:
  """Pairs of `<root>/<split>_pairs.txt`; malformed lines become BadPairs (reported, not fatal)."""
  split_dir = os.path.join(root, split)
  pairs: list[_convert.Pair] = []
  for n, tokens in _convert.read_pairs_file(os.path.join(root, f"{split}_pairs.txt")):
    if len(tokens) != 2:
      pairs.append(_convert.BadPair(f"{split}_pairs.txt:{n}", "", "",
                                    reason=f"pairs line {n}: want 'person cloth', got {tokens}"))
      continue
    p, c = tokens
    p_id, c_id = _convert.stem(p), _convert.stem(c)
    pairs.append(VitonHDPair(f"{p_id}__{c_id}", p_id, c_id, split_dir=split_dir, person_file=p,
                             cloth_file=c))
  return pairs


def convert(root: str, split: str, out_dir: str, *, resolution: int = 1024,
            num_shards: int | None = None, fmt: str = "tfrecord", workers: int = 0,
            progress: bool = True, **option_overrides) -> dict:
  """Converts one VITON-HD split; returns the summary dict (also written to summary.json).

  option_overrides: any PreprocessOptions field (e.g. image_format="png", agnostic_fill=128).
  """
  opts = _convert.make_options(resolution=resolution, **option_overrides)
  return _convert.convert_pairs(list_pairs(root, split), out_dir, source=SOURCE, split=split,
                                opts=opts, num_shards=num_shards, fmt=fmt, workers=workers,
                                progress=progress)


def _add_args(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--root", required=True, help="VITON-HD root (holds <split>_pairs.txt)")
  parser.add_argument("--split", required=True, help="train or test")


def _convert_from_args(args: argparse.Namespace, opts: preprocess.PreprocessOptions) -> dict:
  return _convert.convert_pairs(list_pairs(args.root, args.split), args.out, source=SOURCE,
                                split=args.split, opts=opts, num_shards=args.num_shards,
                                fmt=args.format, workers=args.workers,
                                progress=not args.no_progress)


def main(argv: Sequence[str] | None = None) -> int:
  return _convert.convert_cli(argv, __doc__.splitlines()[0], _add_args, _convert_from_args)


if __name__ == "__main__":
  sys.exit(main())

"""Own photos -> try-on records, from a JSON-lines manifest.

  python -m data_pipelines.manifest --manifest pairs.jsonl --out DIR [--split train]

One JSON object per line; paths relative to the manifest's folder:
  {"id": "p1_g7",                          optional, default "<person stem>__<garment stem>"
   "person_image": "img/p1.jpg",
   "person_parse": "parse/p1.png",          label ids of `label_set`
   "person_keypoints": "pose/p1.json",      OpenPose JSON (BODY_25 or COCO-18), or
                                            {"keypoints": 18 x [x, y, score]} in photo pixels
   "garment_image": "img/g7.jpg",
   "garment_mask": "mask/g7.png",           one of garment_mask (0/255) or garment_parse (label ids)
   "garment_parse": "parse/g7.png",
   "garment_keypoints": "pose/g7.json",     optional: present = worn garment with this pose
   "label_set": "viton_hd"}                 one of tryon_jax.data.labels.LABEL_SETS
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any, Sequence

import numpy as np

from data_pipelines import _convert
from tryon_jax.data import labels
from tryon_jax.data import preprocess
from tryon_jax.data.preprocess import InputError

SOURCE = "manifest"
_REQUIRED = ("person_image", "person_parse", "person_keypoints", "garment_image", "label_set")


def read_keypoints(path: str, min_confidence: float, what: str):
  """OpenPose JSON or {"keypoints": [[x, y, score], ...]} in pixels -> COCO-18 pixels, mask."""
  obj = _convert.read_json(path, what)
  if isinstance(obj, dict) and "people" in obj:
    return preprocess.keypoints_from_openpose(obj, min_confidence)
  return preprocess.keypoints_from_dresscode(obj, (1.0, 1.0), min_confidence)


@dataclasses.dataclass
class ManifestPair(_convert.Pair):
  entry: dict = dataclasses.field(default_factory=dict)
  base_dir: str = ""

  def _path(self, key: str) -> str:
    return os.path.join(self.base_dir, self.entry[key])

  def load(self, opts: preprocess.PreprocessOptions) -> _convert.Loaded:
    e = self.entry
    label_set = labels.get_label_set(e["label_set"])
    image = _convert.read_rgb(self._path("person_image"), "person image")
    parse = _convert.read_label_map(self._path("person_parse"))
    kps, kps_mask = read_keypoints(self._path("person_keypoints"), opts.keypoint_min_confidence,
                                   "person keypoint JSON")
    garment = _convert.read_rgb(self._path("garment_image"), "garment image")
    if e.get("garment_mask"):
      mask = _convert.read_mask(self._path("garment_mask"), opts.garment_mask_threshold)
    else:
      g_parse = _convert.read_label_map(self._path("garment_parse"), "garment parse map")
      mask = np.isin(g_parse, list(label_set.garment))
    g_kps = g_mask = None
    if e.get("garment_keypoints"):
      g_kps, g_mask = read_keypoints(self._path("garment_keypoints"), opts.keypoint_min_confidence,
                                     "garment keypoint JSON")
    return _convert.Loaded(
        label_set=label_set, person_image=image, person_parse=parse, person_kps=kps,
        person_kps_mask=kps_mask, garment_image=garment, garment_mask=mask, garment_kps=g_kps,
        garment_kps_mask=g_mask)


def _check_entry(entry: Any) -> str | None:
  """Reason the manifest entry is unusable, or None."""
  if not isinstance(entry, dict):
    return "entry is not a JSON object"
  missing = [k for k in _REQUIRED if not entry.get(k)]
  if not entry.get("garment_mask") and not entry.get("garment_parse"):
    missing.append("garment_mask|garment_parse")
  if missing:
    return f"missing keys {missing}"
  if entry["label_set"] not in labels.LABEL_SETS:
    return f"unknown label_set {entry['label_set']!r}; known: {sorted(labels.LABEL_SETS)}"
  return None


def list_pairs(manifest: str) -> list[_convert.Pair]:
  if not os.path.isfile(manifest):
    raise FileNotFoundError(f"manifest not found: {manifest}")
  base = os.path.dirname(os.path.abspath(manifest))
  pairs: list[_convert.Pair] = []
  with open(manifest, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      if not line.strip():
        continue
      where = f"{os.path.basename(manifest)}:{n}"
      try:
        entry = json.loads(line)
      except ValueError as e:
        pairs.append(_convert.BadPair(where, "", "", reason=f"line {n}: malformed JSON ({e})"))
        continue
      reason = _check_entry(entry)
      if reason:
        pairs.append(_convert.BadPair(entry.get("id", where) if isinstance(entry, dict) else where,
                                      "", "", reason=f"line {n}: {reason}"))
        continue
      p_id, g_id = _convert.stem(entry["person_image"]), _convert.stem(entry["garment_image"])
      pairs.append(ManifestPair(entry.get("id") or f"{p_id}__{g_id}", p_id, g_id, entry=entry,
                                base_dir=base))
  return pairs


def convert(manifest: str, out_dir: str, *, split: str = "train", resolution: int = 1024,
            num_shards: int | None = None, fmt: str = "tfrecord", workers: int = 0,
            progress: bool = True, **option_overrides) -> dict:
  """Converts a manifest; returns the summary dict (also written to summary.json)."""
  opts = _convert.make_options(resolution=resolution, **option_overrides)
  return _convert.convert_pairs(list_pairs(manifest), out_dir, source=SOURCE, split=split,
                                opts=opts, num_shards=num_shards, fmt=fmt, workers=workers,
                                progress=progress)


def _add_args(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--manifest", required=True, help="JSON-lines file, one pair per line")
  parser.add_argument("--split", default="train", help="name prefix of the shards")


def _convert_from_args(args: argparse.Namespace, opts: preprocess.PreprocessOptions) -> dict:
  return _convert.convert_pairs(list_pairs(args.manifest), args.out, source=SOURCE,
                                split=args.split, opts=opts, num_shards=args.num_shards,
                                fmt=args.format, workers=args.workers,
                                progress=not args.no_progress)


def main(argv: Sequence[str] | None = None) -> int:
  return _convert.convert_cli(argv, __doc__.splitlines()[0], _add_args, _convert_from_args)


if __name__ == "__main__":
  sys.exit(main())

"""Machinery shared by the converters: safe file readers, the shard writer, the summary, the CLI.

A converter lists `Pair`s (one per person/garment pair); `convert_pairs` loads each with
`pair.load()`, preprocesses it (tryon_jax.data.preprocess.make_record) and writes it. Anything that
goes wrong with one pair (missing or truncated file, bad JSON, wrong-size parse map, no person) is
caught, counted and named in summary.json; the conversion goes on. Shards are written under temp
names and renamed only when all are complete, so a crash leaves no half-written output and a
re-run overwrites cleanly.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import math
import multiprocessing
import os
import time
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from configs import common
from tryon_jax.data import labels
from tryon_jax.data import preprocess
from tryon_jax.data import schema
from tryon_jax.data import tfrecord
from tryon_jax.data.preprocess import InputError

FORMATS = {"tfrecord": ".tfrecord", "arrayrecord": ".array_record"}


# ---------------------------------------------------------------- readers (raise InputError)
def read_rgb(path: str, what: str) -> np.ndarray:
  """uint8 [H, W, 3]; InputError naming `what` and the path if missing or undecodable."""
  if not os.path.isfile(path):
    raise InputError(f"missing {what}: {path}")
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert("RGB"))  # convert() loads fully: truncated files raise here.
  except Exception as e:
    raise InputError(f"unreadable {what}: {path} ({type(e).__name__}: {e})") from None


def read_label_map(path: str, what: str = "parse map") -> np.ndarray:
  """Label ids [H, W] from an indexed/grayscale PNG."""
  if not os.path.isfile(path):
    raise InputError(f"missing {what}: {path}")
  try:
    with Image.open(path) as im:
      if im.mode not in ("P", "L", "I", "I;16"):
        raise InputError(f"{what} {path} has mode {im.mode}; want label ids (P or L), not colours")
      return np.asarray(im).astype(np.int32)
  except InputError:
    raise
  except Exception as e:
    raise InputError(f"unreadable {what}: {path} ({type(e).__name__}: {e})") from None


def read_mask(path: str, threshold: int, what: str = "garment mask") -> np.ndarray:
  """Boolean [H, W]: grayscale >= threshold."""
  if not os.path.isfile(path):
    raise InputError(f"missing {what}: {path}")
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert("L")) >= threshold
  except Exception as e:
    raise InputError(f"unreadable {what}: {path} ({type(e).__name__}: {e})") from None


def read_json(path: str, what: str = "keypoint JSON") -> Any:
  if not os.path.isfile(path):
    raise InputError(f"missing {what}: {path}")
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (ValueError, UnicodeDecodeError) as e:
    raise InputError(f"malformed {what}: {path} ({e})") from None


def read_pairs_file(path: str) -> list[tuple[int, list[str]]]:
  """Non-empty lines of a pairs file as (line number, whitespace-split tokens)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"pairs file not found: {path}")
  with open(path, encoding="utf-8") as f:
    return [(n, line.split()) for n, line in enumerate(f, 1) if line.strip()]


def stem(name: str) -> str:
  return os.path.splitext(os.path.basename(name))[0]


# ---------------------------------------------------------------- pairs
@dataclasses.dataclass
class Loaded:
  """What a Pair loads: the inputs of preprocess.make_record except ids and options."""
  label_set: labels.LabelSet
  person_image: np.ndarray
  person_parse: np.ndarray
  person_kps: np.ndarray
  person_kps_mask: np.ndarray
  garment_image: np.ndarray
  garment_mask: np.ndarray
  garment_kps: np.ndarray | None = None
  garment_kps_mask: np.ndarray | None = None


@dataclasses.dataclass
class Pair:
  """One pair to convert. Subclasses implement load(opts) -> Loaded (raising InputError)."""
  pair_id: str
  person_id: str
  garment_id: str

  def load(self, opts: preprocess.PreprocessOptions) -> Loaded:
    raise NotImplementedError


@dataclasses.dataclass
class BadPair(Pair):
  """A pair already known to be bad (e.g. a malformed pairs-file line)."""
  reason: str = ""

  def load(self, opts):
    raise InputError(self.reason)


def _process(args: tuple[Pair, preprocess.PreprocessOptions, str]) -> tuple[str, bytes | str]:
  """Pair -> ("ok", serialized record) or ("skip", reason). Never raises (runs in workers)."""
  pair, opts, source = args
  try:
    got = pair.load(opts)
    rec = preprocess.make_record(
        pair_id=pair.pair_id, person_id=pair.person_id, garment_id=pair.garment_id, source=source,
        label_set=got.label_set, person_image=got.person_image, person_parse=got.person_parse,
        person_kps=got.person_kps, person_kps_mask=got.person_kps_mask,
        garment_image=got.garment_image, garment_mask=got.garment_mask,
        garment_kps=got.garment_kps, garment_kps_mask=got.garment_kps_mask, opts=opts)
    return "ok", schema.serialize(rec, fmt=opts.image_format, jpeg_quality=opts.jpeg_quality)
  except InputError as e:
    return "skip", str(e)
  except Exception as e:  # bad input of a kind we did not foresee must not kill the conversion.
    return "skip", f"{type(e).__name__}: {e}"


# ---------------------------------------------------------------- writing
class _ShardWriters:
  """Round-robin writers over `num_shards` temp files; `commit` renames them into place."""

  def __init__(self, out_dir: str, prefix: str, num_shards: int, fmt: str):
    if fmt not in FORMATS:
      raise ValueError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    self.final = [os.path.join(out_dir, f"{prefix}-{i:05d}-of-{num_shards:05d}{FORMATS[fmt]}")
                  for i in range(num_shards)]
    self.temp = [p + ".tmp" for p in self.final]
    self.counts = [0] * num_shards
    self._next = 0
    if fmt == "tfrecord":
      self._writers = [tfrecord.TFRecordWriter(p) for p in self.temp]
    else:
      from array_record.python.array_record_module import ArrayRecordWriter
      # group_size:1 = every record independently seekable: what a global shuffle needs.
      self._writers = [ArrayRecordWriter(p, "group_size:1") for p in self.temp]

  def write(self, raw: bytes) -> None:
    self._writers[self._next].write(raw)
    self.counts[self._next] += 1
    self._next = (self._next + 1) % len(self._writers)

  def close(self) -> None:
    for w in self._writers:
      w.close()

  def commit(self, out_dir: str, prefix: str) -> list[str]:
    """Renames complete shards into place and removes stale shards of an earlier run."""
    keep = [(t, f) for t, f, c in zip(self.temp, self.final, self.counts) if c > 0]
    for t, f, c in zip(self.temp, self.final, self.counts):
      if c == 0:
        os.remove(t)
    new = {f for _, f in keep}
    for ext in FORMATS.values():
      for old in glob.glob(os.path.join(out_dir, f"{prefix}-*-of-*{ext}")):
        if old not in new:
          os.remove(old)
    for t, f in keep:
      os.replace(t, f)
    return [os.path.basename(f) for _, f in keep]


def convert_pairs(pairs: Sequence[Pair], out_dir: str, *, source: str, split: str,
                  opts: preprocess.PreprocessOptions, num_shards: int | None = None,
                  fmt: str = "tfrecord", workers: int = 0, progress: bool = True) -> dict:
  """Converts `pairs` into `<out_dir>/<split>-XXXXX-of-YYYYY.<ext>` shards plus summary.json.

  Returns the summary dict: written, skipped, skipped_items [{id, reason}], shards, options.
  """
  os.makedirs(out_dir, exist_ok=True)
  start = time.time()
  if num_shards is None:
    num_shards = max(1, math.ceil(len(pairs) / common.preprocess_config().records_per_shard))
  writers = _ShardWriters(out_dir, split, num_shards, fmt)
  skipped: list[dict] = []
  jobs = ((p, opts, source) for p in pairs)
  bar = tqdm(total=len(pairs), desc=f"{source}/{split}", unit="pair", disable=not progress)
  pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
  try:
    results = pool.imap(_process, jobs, chunksize=4) if pool else map(_process, jobs)
    for pair, (status, payload) in zip(pairs, results):
      if status == "ok":
        writers.write(payload)
      else:
        skipped.append({"id": pair.pair_id, "reason": payload})
      bar.update(1)
  except BaseException:
    writers.close()
    for t in writers.temp:  # interrupted: leave no partial shard behind.
      if os.path.exists(t):
        os.remove(t)
    raise
  finally:
    bar.close()
    if pool:
      pool.terminate()
  writers.close()
  shards = writers.commit(out_dir, split)
  summary = {
      "source": source, "split": split, "format": fmt, "written": sum(writers.counts),
      "skipped": len(skipped), "skipped_items": skipped, "shards": shards,
      "resolution": opts.resolution, "options": dataclasses.asdict(opts),
      "seconds": round(time.time() - start, 2)}
  tmp = os.path.join(out_dir, "summary.json.tmp")
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=2)
  os.replace(tmp, os.path.join(out_dir, "summary.json"))
  return summary


# ---------------------------------------------------------------- CLI
def add_common_args(parser: argparse.ArgumentParser) -> None:
  """Flags every converter shares; defaults come from config.data.preprocess."""
  d = common.preprocess_config()
  parser.add_argument("--out", required=True, help="output directory for shards + summary.json")
  parser.add_argument("--resolution", type=int, default=d.resolution, help="stored square side")
  parser.add_argument("--num-shards", type=int, default=None,
                      help=f"default: one per {d.records_per_shard} pairs")
  parser.add_argument("--format", choices=sorted(FORMATS), default="tfrecord")
  parser.add_argument("--image-format", choices=("png", "jpeg"), default=d.image_format)
  parser.add_argument("--jpeg-quality", type=int, default=d.jpeg_quality)
  parser.add_argument("--agnostic-fill", type=int, default=d.agnostic_fill,
                      help="uint8 value filling the masked person box in I_a")
  parser.add_argument("--workers", type=int, default=0, help="processes (0/1 = in-process)")
  parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def options_from_args(args: argparse.Namespace) -> preprocess.PreprocessOptions:
  return make_options(resolution=args.resolution, image_format=args.image_format,
                      jpeg_quality=args.jpeg_quality, agnostic_fill=args.agnostic_fill)


def make_options(**overrides) -> preprocess.PreprocessOptions:
  """PreprocessOptions from config defaults with keyword overrides."""
  return preprocess.PreprocessOptions.from_config(common.preprocess_config(), **overrides)


def run_cli(summary: dict, out_dir: str) -> int:
  """Prints the summary line; exit code 0 unless nothing was written."""
  print(f"{summary['written']} written, {summary['skipped']} skipped -> "
        f"{os.path.join(out_dir, 'summary.json')}")
  for item in summary["skipped_items"][:20]:
    print(f"  skipped {item['id']}: {item['reason']}")
  if summary["skipped"] > 20:
    print(f"  ... {summary['skipped'] - 20} more in summary.json")
  return 0 if summary["written"] > 0 else 1


def convert_cli(argv: Sequence[str] | None, description: str,
                add_args: Callable[[argparse.ArgumentParser], None],
                convert: Callable[..., dict]) -> int:
  """Parses flags, calls `convert(args, opts)`, prints and returns the exit code."""
  parser = argparse.ArgumentParser(description=description)
  add_args(parser)
  add_common_args(parser)
  args = parser.parse_args(argv)
  summary = convert(args, options_from_args(args))
  return run_cli(summary, args.out)


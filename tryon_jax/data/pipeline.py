"""Grain input pipelines over try-on records (TFRecord or ArrayRecord shards).

  make_train_dataset(config, process_index=0, process_count=1) -> grain.IterDataset
      infinite, shuffled, flipped, batched to config.train.batch_size // process_count.
  make_eval_dataset(config, path, batch_size) -> grain.IterDataset
      finite, file order, no augmentation; the last batch is PADDED to batch_size, with
      `valid` [B] float32 (1 = real example, 0 = padding) and `id` [B] str keys.

Batch keys (docs/ARCHITECTURE.md, R = config.data.resolution): person / agnostic / garment
[B, R, R, 3] float32 in [-1, 1]; person_pose / garment_pose [B, 18, 2] float32 in [0, 1];
person_pose_mask / garment_pose_mask [B, 18] float32. For config.stage == "sr1024" the train
batch is only `person` [B, crop, crop, 3]: random config.data.crop_size crops of the person image
at resolution R (the low-res input is derived from it by the diffusion code).

TFRecord: files sharded per host (file i goes to host i % process_count), file order shuffled each
epoch, `cycle_length` files interleaved, window shuffle of `shuffle_buffer` records. ArrayRecord:
global shuffle over all records, record i goes to host i % process_count. The iterator's state
(get_state/set_state, grain.checkpoint.CheckpointSave/Restore) holds file offsets / indices, so the
same config + state resumes exactly at the next batch. A corrupt record raises
tfrecord.CorruptRecordError naming its file and byte offset (ArrayRecord: file and record index).
"""

from __future__ import annotations

import bisect
import glob
import os
from typing import Any

import grain
import numpy as np
from grain import experimental as grain_exp
from PIL import Image

from tryon_jax.data import preprocess
from tryon_jax.data import schema
from tryon_jax.data import tfrecord
from tryon_jax.data.tfrecord import CorruptRecordError

IMAGE_FIELDS = {"person": "person/image", "agnostic": "agnostic/image", "garment": "garment/image"}


def list_files(pattern: str) -> tuple[list[str], str]:
  """Sorted files of a glob and their format ("tfrecord" | "arrayrecord")."""
  if not pattern:
    raise ValueError("config.data.path is empty: give a glob of .tfrecord or .array_record files")
  files = sorted(glob.glob(pattern))
  if not files:
    raise FileNotFoundError(f"config.data.path {pattern!r} matches no files")
  kinds = {".tfrecord": "tfrecord", ".array_record": "arrayrecord"}
  exts = {os.path.splitext(f)[1] for f in files}
  if len(exts) != 1 or not exts <= set(kinds):
    raise ValueError(f"config.data.path {pattern!r} must match only .tfrecord or only "
                     f".array_record files, got extensions {sorted(exts)}")
  return files, kinds[exts.pop()]


# ---------------------------------------------------------------- element transforms
class _ArrayRecordSource:
  """Maps a global ArrayRecord index to 'file#record' for error messages."""

  def __init__(self, files: list[str]):
    from array_record.python.array_record_module import ArrayRecordReader
    self.files, self.starts, total = files, [], 0
    for f in files:
      reader = ArrayRecordReader(f)
      self.starts.append(total)
      total += reader.num_records()
      reader.close()

  def name(self, index: int) -> str:
    i = bisect.bisect_right(self.starts, index) - 1
    return f"{self.files[i]}#record {index - self.starts[i]}"


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
  """uint8 [H, H, 3] -> [size, size, 3] (PIL bicubic, as training sees it)."""
  if image.shape[0] == size:
    return image
  return np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))


def to_float(image: np.ndarray) -> np.ndarray:
  """uint8 -> float32 in [-1, 1]."""
  return image.astype(np.float32) / 127.5 - 1.0


class Decode(grain.transforms.Map):
  """{"raw", "source"} -> dict of uint8 images at `resolution` + float32 poses (+ id)."""

  def __init__(self, resolution: int, images: tuple[str, ...], with_pose: bool, with_id: bool):
    self._res, self._images = resolution, images
    self._with_pose, self._with_id = with_pose, with_id

  def map(self, element: dict) -> dict:
    try:
      f = schema.parse_features(element["raw"], tuple(IMAGE_FIELDS[k] for k in self._images))
    except schema.RecordError as e:
      raise CorruptRecordError(f"{element['source']}: corrupt record: {e}") from None
    out: dict[str, Any] = {k: resize_image(f[IMAGE_FIELDS[k]], self._res) for k in self._images}
    if self._with_pose:
      out["person_pose"] = f["person/keypoints"]
      out["person_pose_mask"] = f["person/keypoints_mask"]
      out["garment_pose"] = f["garment/keypoints"]
      out["garment_pose_mask"] = f["garment/keypoints_mask"]
    if self._with_id:
      out["id"] = np.asarray(f["id"])
    return out


class Augment(grain.transforms.RandomMap):
  """Horizontal flip (all images + keypoints with left/right swapped), optional random crop;
  then images to float32 [-1, 1]."""

  def __init__(self, flip_prob: float, crop_size: int | None):
    self._flip_prob, self._crop = flip_prob, crop_size

  def random_map(self, element: dict, rng: np.random.Generator) -> dict:
    out = dict(element)
    if rng.random() < self._flip_prob:
      for k in IMAGE_FIELDS:
        if k in out:
          out[k] = out[k][:, ::-1]
      if "person_pose" in out:
        for pose in ("person_pose", "garment_pose"):
          out[pose], out[pose + "_mask"] = preprocess.flip_keypoints(out[pose], out[pose + "_mask"])
    if self._crop:
      size = out["person"].shape[0]
      if self._crop > size:
        raise ValueError(f"config.data.crop_size {self._crop} > resolution {size}")
      y, x = rng.integers(0, size - self._crop + 1, size=2)
      out["person"] = out["person"][y:y + self._crop, x:x + self._crop]
    for k in IMAGE_FIELDS:
      if k in out:
        out[k] = to_float(out[k])
    return out


class ToFloat(grain.transforms.Map):
  def map(self, element: dict) -> dict:
    return {k: to_float(v) if k in IMAGE_FIELDS else v for k, v in element.items()}


class PadBatch(grain.transforms.Map):
  """Pads a (last, partial) batch to `batch_size` with zeros and adds `valid` [B] float32."""

  def __init__(self, batch_size: int):
    self._bs = batch_size

  def map(self, batch: dict) -> dict:
    n = len(batch["id"])
    out = {}
    for k, v in batch.items():
      if n < self._bs:
        fill = np.zeros((self._bs - n,) + v.shape[1:], v.dtype)  # "" for the str `id`
        v = np.concatenate([v, fill])
      out[k] = v
    out["valid"] = (np.arange(self._bs) < n).astype(np.float32)
    return out


# ---------------------------------------------------------------- sources
def _tfrecord_files_dataset(files: list[str]) -> grain.MapDataset:
  # The class itself is the map function: picklable for mp_prefetch workers.
  return grain.MapDataset.source(files).map(tfrecord.CheckedTFRecordIterDataset)


class _TagSource:
  """(index, raw) -> {"raw", "source": "file#record k"}; a class so workers can unpickle it."""

  def __init__(self, files: list[str]):
    self._names = _ArrayRecordSource(files)

  def __call__(self, index: int, raw: bytes) -> dict:
    return {"raw": raw, "source": self._names.name(index)}


def _arrayrecord_dataset(files: list[str]) -> grain.MapDataset:
  source = grain.MapDataset.source(grain.sources.ArrayRecordDataSource(files))
  return source.map_with_index(_TagSource(files))


# ---------------------------------------------------------------- public API
def _stage_view(config) -> tuple[tuple[str, ...], bool, int | None]:
  """(image keys, with poses?, crop size) of the train batch for config.stage."""
  if config.stage == "sr1024":
    return ("person",), False, int(config.data.crop_size)
  return tuple(IMAGE_FIELDS), True, None


def make_train_dataset(config, *, process_index: int = 0,
                       process_count: int = 1) -> grain.IterDataset:
  """Infinite training batches for this host (see module docstring for keys and order)."""
  d = config.data
  if config.train.batch_size % process_count:
    raise ValueError(f"config.train.batch_size {config.train.batch_size} is not divisible by "
                     f"process_count {process_count}")
  local_batch = config.train.batch_size // process_count
  files, kind = list_files(d.path)
  images, with_pose, crop = _stage_view(config)
  decode = Decode(int(d.resolution), images, with_pose, with_id=False)
  augment = Augment(float(d.flip_prob), crop)
  # Hosts read disjoint data, so their flips need not differ; offset anyway for independence.
  aug_seed = int(config.seed) + process_index
  if kind == "tfrecord":
    host_files = files[process_index::process_count]
    if not host_files:
      raise ValueError(f"{len(files)} record files cannot be split over {process_count} hosts: "
                       "write at least one shard per host (--num-shards)")
    per_file = _tfrecord_files_dataset(host_files).shuffle(seed=int(config.seed)).repeat(None)
    ds = grain_exp.InterleaveIterDataset(per_file,
                                         cycle_length=min(int(d.cycle_length), len(host_files)))
    ds = grain_exp.WindowShuffleIterDataset(ds, window_size=int(d.shuffle_buffer),
                                            seed=int(config.seed))
    ds = ds.map(decode).random_map(augment, seed=aug_seed).batch(local_batch, drop_remainder=True)
    if d.num_workers > 0:
      return ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(d.num_workers)))
    return grain_exp.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=int(d.prefetch_batches))
  records = _arrayrecord_dataset(files).shuffle(seed=int(config.seed)).repeat(None)
  records = records[process_index::process_count]
  ds = records.map(decode).random_map(augment, seed=aug_seed).batch(local_batch,
                                                                    drop_remainder=True)
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=int(d.read_threads),
                                            prefetch_buffer_size=int(d.prefetch_batches)))
  if d.num_workers > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(d.num_workers)))
  return it


def make_eval_dataset(config, path: str, batch_size: int) -> grain.IterDataset:
  """Finite batches of all records of `path` (a glob) in file order, at config.data.resolution,
  with every Batch key plus `id` and `valid` (the last batch is padded, valid = 0 there)."""
  files, kind = list_files(path)
  decode = Decode(int(config.data.resolution), tuple(IMAGE_FIELDS), True, with_id=True)
  if kind == "tfrecord":
    ds = grain_exp.InterleaveIterDataset(_tfrecord_files_dataset(files), cycle_length=1)
    return ds.map(decode).map(ToFloat()).batch(batch_size).map(PadBatch(batch_size))
  ds = _arrayrecord_dataset(files).map(decode).map(ToFloat()).batch(batch_size)
  return ds.map(PadBatch(batch_size)).to_iter_dataset()

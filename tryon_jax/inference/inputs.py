"""User inputs -> model inputs: one photo pair from files, or pairs drawn from a record set.

  load_user_pair(...)  person photo + parse map + OpenPose JSON and a garment photo + (mask | parse
      map) [+ OpenPose JSON] -> a TryOnRecord, with exactly the converters' preprocessing
      (tryon_jax.data.preprocess.make_record; files read by the converters' safe readers).
  RecordSet(glob)      the records of a converted set, pairable by person and garment id (paired:
      each record as it is; unpaired: a pairs file "person garment" per line, or each person with
      the next record's garment).
  to_example(...)      a pair -> the Batch dict of docs/ARCHITECTURE.md (float32 images in [-1, 1]).

Every problem is an ``InputError`` whose one-line message names the input (flag and file).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import dataclasses
import os

import numpy as np

from tryon_jax.data import labels
from tryon_jax.data import pipeline
from tryon_jax.data import preprocess
from tryon_jax.data import schema

InputError = preprocess.InputError


# ---------------------------------------------------------------- one pair from files
@dataclasses.dataclass(frozen=True)
class UserPair:
  """The files of one try-on request (VITON-HD conventions). garment_mask or garment_parse names
  the garment's pixels; garment_pose None = lay-flat garment (pose absent)."""
  person: str
  person_parse: str
  person_pose: str
  garment: str
  garment_mask: str | None = None
  garment_parse: str | None = None
  garment_pose: str | None = None

  def pair_id(self) -> str:
    stem = lambda p: os.path.splitext(os.path.basename(p))[0]
    return f"{stem(self.person)}__{stem(self.garment)}"


def _reader():
  # The converters' readers: one message per missing / undecodable / malformed file.
  from data_pipelines import _convert  # pylint: disable=g-import-not-at-top
  return _convert


def read_photo(path: str, flag: str) -> np.ndarray:
  """uint8 [H, W, 3]; InputError naming the flag and the file."""
  try:
    return _reader().read_rgb(path, "image")
  except InputError as e:
    raise InputError(f"{flag}: {e}") from None


def load_user_pair(pair: UserPair, opts: preprocess.PreprocessOptions,
                   label_set: labels.LabelSet = labels.VITON_HD) -> schema.TryOnRecord:
  """Reads and preprocesses one pair: a record at ``opts.resolution`` (crop, I_a, I_c, poses).

  Raises InputError naming the flag and the file for a missing/unreadable file, a parse map or
  mask whose size differs from its photo, a person with too few keypoints, an empty garment.
  """
  rd = _reader()
  if bool(pair.garment_mask) == bool(pair.garment_parse):
    raise InputError("give exactly one of --garment_mask (0/255 image) and --garment_parse "
                     "(label-id PNG) for the garment")

  def named(flag: str, path: str, load):
    try:
      return load()
    except InputError as e:  # the readers name the file; the keypoint parser does not.
      where = f"--{flag}" if path in str(e) else f"--{flag} {path}"
      raise InputError(f"{where}: {e}") from None

  person = named("person", pair.person, lambda: rd.read_rgb(pair.person, "person image"))
  parse = named("person_parse", pair.person_parse,
                lambda: rd.read_label_map(pair.person_parse, "person parse map"))
  if parse.shape != person.shape[:2]:
    raise InputError(f"--person_parse: {pair.person_parse} is {parse.shape[1]}x{parse.shape[0]} "
                     f"but --person {pair.person} is {person.shape[1]}x{person.shape[0]}")
  kps, kps_mask = named("person_pose", pair.person_pose, lambda: preprocess.keypoints_from_openpose(
      rd.read_json(pair.person_pose, "person keypoint JSON"), opts.keypoint_min_confidence))
  if kps_mask.sum() < opts.min_person_keypoints:
    raise InputError(f"--person_pose: {pair.person_pose}: no person detected "
                     f"({int(kps_mask.sum())} visible keypoints, need {opts.min_person_keypoints})")
  garment = named("garment", pair.garment, lambda: rd.read_rgb(pair.garment, "garment image"))
  if pair.garment_mask:
    g_flag, g_path = "garment_mask", pair.garment_mask
    mask = named(g_flag, g_path, lambda: rd.read_mask(g_path, opts.garment_mask_threshold))
  else:
    g_flag, g_path = "garment_parse", pair.garment_parse
    g_parse = named(g_flag, g_path, lambda: rd.read_label_map(g_path, "garment parse map"))
    mask = np.isin(g_parse, list(label_set.garment))
  if mask.shape != garment.shape[:2]:
    raise InputError(f"--{g_flag}: {g_path} is {mask.shape[1]}x{mask.shape[0]} but --garment "
                     f"{pair.garment} is {garment.shape[1]}x{garment.shape[0]}")
  if not mask.any():
    raise InputError(f"--{g_flag}: {g_path} marks no garment pixel")
  g_kps = g_mask = None
  if pair.garment_pose:
    g_kps, g_mask = named("garment_pose", pair.garment_pose,
                          lambda: preprocess.keypoints_from_openpose(
                              rd.read_json(pair.garment_pose, "garment keypoint JSON"),
                              opts.keypoint_min_confidence))
  p_stem = os.path.splitext(os.path.basename(pair.person))[0]
  g_stem = os.path.splitext(os.path.basename(pair.garment))[0]
  try:
    return preprocess.make_record(
        pair_id=pair.pair_id(), person_id=p_stem, garment_id=g_stem, source="user",
        label_set=label_set, person_image=person, person_parse=parse, person_kps=kps,
        person_kps_mask=kps_mask, garment_image=garment, garment_mask=mask, garment_kps=g_kps,
        garment_kps_mask=g_mask, opts=opts)
  except InputError as e:  # e.g. a parse map with no foreground
    raise InputError(f"--person {pair.person}: {e}") from None


# ---------------------------------------------------------------- records
def _model_image(image: np.ndarray, resolution: int) -> np.ndarray:
  """uint8 record image -> float32 [R, R, 3] in [-1, 1], exactly as the training pipeline does."""
  return pipeline.to_float(pipeline.resize_image(image, resolution))


def to_example(person_side: dict, garment_side: dict, resolution: int) -> dict[str, np.ndarray]:
  """Batch entries of one pair (docs/ARCHITECTURE.md): agnostic, garment [R, R, 3] float32 in
  [-1, 1], poses [18, 2], masks [18]; plus ``person`` [R, R, 3] (the photo, the paired target).

  person_side / garment_side: records as dicts of schema.parse_features keys (the person's and the
  garment's record; the same one for a paired example)."""
  return {
      "person": _model_image(person_side["person/image"], resolution),
      "agnostic": _model_image(person_side["agnostic/image"], resolution),
      "garment": _model_image(garment_side["garment/image"], resolution),
      "person_pose": person_side["person/keypoints"].astype(np.float32),
      "person_pose_mask": person_side["person/keypoints_mask"].astype(np.float32),
      "garment_pose": garment_side["garment/keypoints"].astype(np.float32),
      "garment_pose_mask": garment_side["garment/keypoints_mask"].astype(np.float32),
  }


def record_features(rec: schema.TryOnRecord) -> dict:
  """A TryOnRecord as the parse_features dict that to_example reads."""
  return {"person/image": rec.person, "agnostic/image": rec.agnostic,
          "garment/image": rec.garment, "person/keypoints": rec.person_pose,
          "person/keypoints_mask": rec.person_pose_mask, "garment/keypoints": rec.garment_pose,
          "garment/keypoints_mask": rec.garment_pose_mask, "id": rec.id}


@dataclasses.dataclass(frozen=True)
class PairRef:
  """A pair of a record set: the person's record index, the garment's record index, an id."""
  pair_id: str
  person_index: int
  garment_index: int

  @property
  def paired(self) -> bool:
    return self.person_index == self.garment_index


def _read_raw(path: str) -> Iterator[tuple[str, bytes]]:
  """(where, serialized record) of every record of one .tfrecord / .array_record file."""
  if path.endswith(".array_record"):
    from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
    reader = array_record_module.ArrayRecordReader(path)
    try:
      for i in range(reader.num_records()):
        yield f"{path}#record {i}", reader.read([i])[0]
    finally:
      reader.close()
  else:
    from tryon_jax.data import tfrecord  # pylint: disable=g-import-not-at-top
    for offset, raw in tfrecord.read_tfrecord(path):
      yield f"{path}@{offset}", raw


class RecordSet:
  """All records of a glob, kept serialized in memory (a test set: ~0.5 MB per 1024-px JPEG
  record) and decoded one pair at a time."""

  def __init__(self, pattern: str, flag: str = "--records"):
    from tryon_jax.data import tfrecord  # pylint: disable=g-import-not-at-top
    try:
      files, _ = pipeline.list_files(pattern)
    except (ValueError, FileNotFoundError) as e:
      raise InputError(f"{flag}: {str(e).replace('config.data.path', 'the glob')}") from None
    self.raw: list[bytes] = []
    self.where: list[str] = []
    self.ids: list[str] = []
    self.by_person: dict[str, int] = {}
    self.by_garment: dict[str, int] = {}
    for path in files:
      try:
        for where, raw in _read_raw(path):
          head = schema.parse_features(raw, image_keys=())  # checks every non-image field
          i = len(self.raw)
          self.raw.append(raw)
          self.where.append(where)
          self.ids.append(head["id"])
          self.by_person.setdefault(head["person_id"], i)
          self.by_garment.setdefault(head["garment_id"], i)
      except (tfrecord.CorruptRecordError, schema.RecordError, OSError) as e:
        raise InputError(f"{flag}: {path}: {e}") from None
    if not self.raw:
      raise InputError(f"{flag}: {pattern} holds no records")

  def __len__(self) -> int:
    return len(self.raw)

  def paired(self) -> list[PairRef]:
    """Every record with its own garment (the ground truth is the record's person photo)."""
    return [PairRef(self.ids[i], i, i) for i in range(len(self))]

  def shifted(self) -> list[PairRef]:
    """Unpaired without a pairs file: person i wears the garment of record i + 1 (cyclically)."""
    n = len(self)
    if n < 2:
      raise InputError("unpaired evaluation needs at least 2 records (or a --pairs file)")
    return [self._ref(i, (i + 1) % n) for i in range(n)]

  def _ref(self, p: int, g: int) -> PairRef:
    person_id = schema.parse_features(self.raw[p], image_keys=())["person_id"]
    garment_id = schema.parse_features(self.raw[g], image_keys=())["garment_id"]
    return PairRef(f"{person_id}__{garment_id}", p, g)

  def from_pairs_file(self, path: str, flag: str = "--pairs") -> list[PairRef]:
    """Lines "person garment" (ids or file names: VITON-HD's test_pairs.txt works as is)."""
    if not os.path.isfile(path):
      raise InputError(f"{flag}: {path} does not exist")
    refs = []
    with open(path, encoding="utf-8") as f:
      for n, line in enumerate(f, 1):
        tokens = line.split()
        if not tokens:
          continue
        if len(tokens) != 2:
          raise InputError(f"{flag}: {path}:{n}: want 'person garment', got {line.strip()!r}")
        p_id, g_id = (os.path.splitext(os.path.basename(t))[0] for t in tokens)
        if p_id not in self.by_person:
          raise InputError(f"{flag}: {path}:{n}: no record has person {p_id!r}")
        if g_id not in self.by_garment:
          raise InputError(f"{flag}: {path}:{n}: no record has garment {g_id!r}")
        refs.append(PairRef(f"{p_id}__{g_id}", self.by_person[p_id], self.by_garment[g_id]))
    if not refs:
      raise InputError(f"{flag}: {path} lists no pairs")
    return refs

  def example(self, ref: PairRef, resolution: int) -> dict[str, np.ndarray]:
    """The Batch entries of a pair at ``resolution`` (see to_example)."""
    def features(i: int, keys: tuple[str, ...]) -> dict:
      try:
        return schema.parse_features(self.raw[i], image_keys=keys)
      except schema.RecordError as e:
        raise InputError(f"{self.where[i]}: {e}") from None
    person_keys = ("person/image", "agnostic/image")
    if ref.paired:
      both = features(ref.person_index, person_keys + ("garment/image",))
      return to_example(both, both, resolution)
    return to_example(features(ref.person_index, person_keys),
                      features(ref.garment_index, ("garment/image",)), resolution)


def stack(examples: Sequence[dict[str, np.ndarray]], batch_size: int) -> dict[str, np.ndarray]:
  """Examples -> one batch of ``batch_size`` rows, padded by repeating the last example (so every
  batch has one shape and the sampler compiles once; padded rows are dropped by the caller)."""
  if not examples or len(examples) > batch_size:
    raise ValueError(f"stack: {len(examples)} examples for a batch of {batch_size}")
  rows = list(examples) + [examples[-1]] * (batch_size - len(examples))
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}

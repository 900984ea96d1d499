"""The try-on record: one serialized `tf.train.Example` per (person, garment) pair, without TF.

Feature keys (docs/DATA.md has the full table):
  id, person_id, garment_id, source, label_set      bytes  (utf-8 strings)
  person/image, agnostic/image, garment/image        bytes  PNG or JPEG, all `resolution` square
  image/format                                       bytes  "png" | "jpeg"
  resolution                                         int64  [1]   stored square side R
  person/keypoints, garment/keypoints                float  [36]  (x, y) * 18, COCO-18, in [0, 1]
  person/keypoints_mask, garment/keypoints_mask      float  [18]  1 = visible
  garment/pose_present                               int64  [1]   0 for lay-flat garments
  person/orig_size, garment/orig_size                int64  [2]   (height, width) of the source
  person/crop, garment/crop                          float  [3]   (x0, y0, side) of the square crop
                                                                  in source pixels (x0, y0 may be < 0)
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
from PIL import Image
from tensorflow_datasets.proto import tf_example_pb2

from tryon_jax.data import labels

K = labels.NUM_KEYPOINTS
IMAGE_KEYS = ("person/image", "agnostic/image", "garment/image")
_STR_KEYS = ("id", "person_id", "garment_id", "source", "label_set", "image/format")
_FLOAT_KEYS = {"person/keypoints": 2 * K, "garment/keypoints": 2 * K, "person/keypoints_mask": K,
               "garment/keypoints_mask": K, "person/crop": 3, "garment/crop": 3}
_INT_KEYS = {"resolution": 1, "garment/pose_present": 1, "person/orig_size": 2,
             "garment/orig_size": 2}


class RecordError(ValueError):
  """A record that does not follow the schema; the message names the field."""


@dataclasses.dataclass
class TryOnRecord:
  """One decoded record. Images uint8 [R, R, 3]; keypoints float32 [18, 2] in [0, 1]."""
  id: str
  person_id: str
  garment_id: str
  source: str
  label_set: str
  person: np.ndarray
  agnostic: np.ndarray
  garment: np.ndarray
  person_pose: np.ndarray
  person_pose_mask: np.ndarray
  garment_pose: np.ndarray
  garment_pose_mask: np.ndarray
  garment_pose_present: bool
  person_orig_size: tuple[int, int]
  garment_orig_size: tuple[int, int]
  person_crop: tuple[float, float, float]
  garment_crop: tuple[float, float, float]


def encode_image(image: np.ndarray, fmt: str, jpeg_quality: int) -> bytes:
  """uint8 [H, W, 3] -> PNG/JPEG bytes."""
  buf = io.BytesIO()
  pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
  if fmt == "png":
    pil.save(buf, format="PNG", compress_level=1)  # level 1: ~4x faster than 6, ~10 % larger.
  elif fmt == "jpeg":
    pil.save(buf, format="JPEG", quality=jpeg_quality, subsampling=0)
  else:
    raise ValueError(f"image format must be 'png' or 'jpeg', got {fmt!r}")
  return buf.getvalue()


def decode_image(data: bytes, field: str = "image") -> np.ndarray:
  """PNG/JPEG bytes -> uint8 [H, W, 3]; raises RecordError naming `field` if undecodable."""
  try:
    with Image.open(io.BytesIO(data)) as pil:
      return np.asarray(pil.convert("RGB"))
  except Exception as e:  # PIL raises several types for bad bytes.
    raise RecordError(f"field {field!r}: undecodable image ({type(e).__name__}: {e})") from None


def serialize(rec: TryOnRecord, *, fmt: str = "png", jpeg_quality: int = 95) -> bytes:
  """TryOnRecord -> serialized tf.train.Example bytes (validates shapes first)."""
  r = rec.person.shape[0]
  for name in ("person", "agnostic", "garment"):
    arr = getattr(rec, name)
    if arr.shape != (r, r, 3) or arr.dtype != np.uint8:
      raise RecordError(f"field {name!r}: want uint8 [{r}, {r}, 3], got {arr.dtype} {arr.shape}")
  for name in ("person_pose", "garment_pose"):
    if getattr(rec, name).shape != (K, 2):
      raise RecordError(f"field {name!r}: want [{K}, 2], got {getattr(rec, name).shape}")
  ex = tf_example_pb2.Example()
  f = ex.features.feature
  strs = {"id": rec.id, "person_id": rec.person_id, "garment_id": rec.garment_id,
          "source": rec.source, "label_set": rec.label_set, "image/format": fmt}
  for key, value in strs.items():
    f[key].bytes_list.value.append(value.encode("utf-8"))
  for key, arr in zip(IMAGE_KEYS, (rec.person, rec.agnostic, rec.garment)):
    f[key].bytes_list.value.append(encode_image(arr, fmt, jpeg_quality))
  floats = {"person/keypoints": rec.person_pose, "garment/keypoints": rec.garment_pose,
            "person/keypoints_mask": rec.person_pose_mask,
            "garment/keypoints_mask": rec.garment_pose_mask,
            "person/crop": rec.person_crop, "garment/crop": rec.garment_crop}
  for key, value in floats.items():
    f[key].float_list.value.extend(np.asarray(value, np.float32).reshape(-1).tolist())
  ints = {"resolution": [r], "garment/pose_present": [int(rec.garment_pose_present)],
          "person/orig_size": rec.person_orig_size, "garment/orig_size": rec.garment_orig_size}
  for key, value in ints.items():
    f[key].int64_list.value.extend(int(v) for v in value)
  return ex.SerializeToString()


def parse_features(raw: bytes, image_keys: tuple[str, ...] = IMAGE_KEYS) -> dict:
  """Serialized Example -> dict of numpy arrays / str, images decoded to uint8 [R, R, 3].

  Only `image_keys` are decoded (the SR-1024 pipeline needs the person image only).
  Raises RecordError naming the first missing or malformed field.
  """
  try:
    ex = tf_example_pb2.Example.FromString(raw)
  except Exception as e:
    raise RecordError(f"not a tf.train.Example ({type(e).__name__}: {e})") from None
  f = ex.features.feature
  out: dict = {}

  def need(key: str):
    if key not in f:
      raise RecordError(f"missing field {key!r}")
    return f[key]

  for key in _STR_KEYS:
    vals = need(key).bytes_list.value
    if len(vals) != 1:
      raise RecordError(f"field {key!r}: want 1 bytes value, got {len(vals)}")
    out[key] = vals[0].decode("utf-8", errors="replace")
  for key, n in _FLOAT_KEYS.items():
    vals = need(key).float_list.value
    if len(vals) != n:
      raise RecordError(f"field {key!r}: want {n} floats, got {len(vals)}")
    out[key] = np.asarray(vals, np.float32)
  for key, n in _INT_KEYS.items():
    vals = need(key).int64_list.value
    if len(vals) != n:
      raise RecordError(f"field {key!r}: want {n} ints, got {len(vals)}")
    out[key] = np.asarray(vals, np.int64)
  res = int(out["resolution"][0])
  for key in image_keys:
    vals = need(key).bytes_list.value
    if len(vals) != 1:
      raise RecordError(f"field {key!r}: want 1 image, got {len(vals)}")
    img = decode_image(vals[0], key)
    if img.shape != (res, res, 3):
      raise RecordError(f"field {key!r}: image {img.shape} does not match resolution {res}")
    out[key] = img
  out["person/keypoints"] = out["person/keypoints"].reshape(K, 2)
  out["garment/keypoints"] = out["garment/keypoints"].reshape(K, 2)
  return out


def deserialize(raw: bytes) -> TryOnRecord:
  """Serialized Example -> TryOnRecord (all images decoded)."""
  d = parse_features(raw)
  return TryOnRecord(
      id=d["id"], person_id=d["person_id"], garment_id=d["garment_id"], source=d["source"],
      label_set=d["label_set"], person=d["person/image"], agnostic=d["agnostic/image"],
      garment=d["garment/image"], person_pose=d["person/keypoints"],
      person_pose_mask=d["person/keypoints_mask"], garment_pose=d["garment/keypoints"],
      garment_pose_mask=d["garment/keypoints_mask"],
      garment_pose_present=bool(d["garment/pose_present"][0]),
      person_orig_size=tuple(int(v) for v in d["person/orig_size"]),
      garment_orig_size=tuple(int(v) for v in d["garment/orig_size"]),
      person_crop=tuple(float(v) for v in d["person/crop"]),
      garment_crop=tuple(float(v) for v in d["garment/crop"]))

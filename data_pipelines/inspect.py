"""Looks inside try-on records: count, one decoded example, and an optional contact sheet.

  python -m data_pipelines.inspect --records 'DIR/*.tfrecord' [--contact-sheet out.png] [--num 6]

The contact sheet has one row per example: person | agnostic I_a | garment I_c, with J_p drawn on
the person and I_a and J_g on the garment (when present); right-side joints red, left-side blue.
"""

from __future__ import annotations

import argparse
import sys
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw

from tryon_jax.data import labels
from tryon_jax.data import pipeline
from tryon_jax.data import schema
from tryon_jax.data import tfrecord

_RIGHT = {2, 3, 4, 8, 9, 10, 14, 16}  # COCO-18 right-side joints (drawn red)


def iter_raw(files: list[str], kind: str) -> Iterator[bytes]:
  for f in files:
    if kind == "tfrecord":
      for _, raw in tfrecord.read_tfrecord(f):
        yield raw
    else:
      from array_record.python.array_record_module import ArrayRecordReader
      reader = ArrayRecordReader(f)
      for i in range(reader.num_records()):
        yield reader.read([i])[0]
      reader.close()


def count(files: list[str], kind: str) -> int:
  if kind == "tfrecord":
    return sum(tfrecord.count_records(f) for f in files)
  from array_record.python.array_record_module import ArrayRecordReader
  total = 0
  for f in files:
    reader = ArrayRecordReader(f)
    total += reader.num_records()
    reader.close()
  return total


def describe(rec: schema.TryOnRecord) -> str:
  lines = []
  for field in rec.__dataclass_fields__:
    v = getattr(rec, field)
    if isinstance(v, np.ndarray):
      lines.append(f"  {field:22s} {str(v.dtype):8s} {list(v.shape)}  "
                   f"min {v.min():.3f} max {v.max():.3f}")
    else:
      lines.append(f"  {field:22s} {v!r}")
  return "\n".join(lines)


def draw_pose(image: np.ndarray, pose: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Skeleton of normalized COCO-18 keypoints over uint8 [R, R, 3]."""
  pil = Image.fromarray(image.copy())
  draw = ImageDraw.Draw(pil)
  r = image.shape[0]
  pts = pose * r
  dot = max(1, r // 64)
  for a, b in labels.COCO18_LIMBS:
    if mask[a] > 0 and mask[b] > 0:
      draw.line([tuple(pts[a]), tuple(pts[b])], fill=(255, 255, 0), width=max(1, r // 128))
  for k in range(len(pts)):
    if mask[k] > 0:
      x, y = pts[k]
      colour = (255, 0, 0) if k in _RIGHT else (0, 128, 255)
      draw.ellipse([x - dot, y - dot, x + dot, y + dot], fill=colour)
  return np.asarray(pil)


def contact_sheet(records: Sequence[schema.TryOnRecord]) -> np.ndarray:
  """uint8 [n * R, 3 * R, 3]: rows of person | I_a | I_c with poses drawn."""
  rows = []
  for rec in records:
    rows.append(np.concatenate([
        draw_pose(rec.person, rec.person_pose, rec.person_pose_mask),
        draw_pose(rec.agnostic, rec.person_pose, rec.person_pose_mask),
        draw_pose(rec.garment, rec.garment_pose, rec.garment_pose_mask)], axis=1))
  return np.concatenate(rows, axis=0)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--records", required=True, help="glob of .tfrecord or .array_record files")
  parser.add_argument("--contact-sheet", default=None, help="write a PNG contact sheet here")
  parser.add_argument("--num", type=int, default=6, help="examples on the contact sheet")
  args = parser.parse_args(argv)
  files, kind = pipeline.list_files(args.records)
  print(f"{len(files)} {kind} file(s), {count(files, kind)} records")
  records = []
  for raw in iter_raw(files, kind):
    records.append(schema.deserialize(raw))
    if len(records) >= max(1, args.num if args.contact_sheet else 1):
      break
  if not records:
    print("no records")
    return 1
  print(f"first record ({records[0].id}):\n{describe(records[0])}")
  if args.contact_sheet:
    Image.fromarray(contact_sheet(records)).save(args.contact_sheet)
    print(f"contact sheet of {len(records)} examples -> {args.contact_sheet}")
  return 0


if __name__ == "__main__":
  sys.exit(main())

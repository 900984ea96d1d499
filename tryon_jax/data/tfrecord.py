"""TFRecord framing without TensorFlow: a writer, a checked reader, and a checked Grain source.

Framing per record: uint64 length | uint32 masked crc32c(length) | data | uint32 masked crc32c(data).
Grain's `TFRecordIterDataset` does not check CRCs and reports a broken file with a hex dump and no
file name; `CheckedTFRecordIterDataset` wraps it, checks both CRCs and raises `CorruptRecordError`
naming the file and byte offset. crc32c comes from `google-crc32c` (C, ~2 GB/s); without it a
pure-Python table is used for writing and data CRCs are not checked on reading (too slow).
"""

from __future__ import annotations

import logging
import os
import struct
from typing import Iterable, Iterator

import grain
from grain import experimental as grain_exp

try:
  import google_crc32c as _gcrc
  _FAST_CRC = _gcrc.implementation == "c"
except ImportError:  # optional: pure-Python fallback below.
  _gcrc = None
  _FAST_CRC = False

_HEADER = 12  # uint64 length + uint32 crc
_FOOTER = 4


def _table() -> list[int]:
  poly, tab = 0x82F63B78, []  # Castagnoli polynomial, reflected.
  for i in range(256):
    c = i
    for _ in range(8):
      c = (c >> 1) ^ poly if c & 1 else c >> 1
    tab.append(c)
  return tab


_TABLE = _table() if _gcrc is None else None


def crc32c(data: bytes) -> int:
  if _gcrc is not None:
    return _gcrc.value(data)
  c = 0xFFFFFFFF
  for b in data:
    c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
  return c ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
  c = crc32c(data)
  return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class CorruptRecordError(ValueError):
  """A TFRecord file whose framing or payload is broken; the message names file and offset."""


class TFRecordWriter:
  """Appends framed records to one file. Use as a context manager."""

  def __init__(self, path: str):
    self._f = open(path, "wb")

  def write(self, record: bytes) -> None:
    header = struct.pack("<Q", len(record))
    self._f.write(header + struct.pack("<I", masked_crc(header)) + record
                  + struct.pack("<I", masked_crc(record)))

  def close(self) -> None:
    self._f.close()

  def __enter__(self) -> "TFRecordWriter":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def write_tfrecord(path: str, records: Iterable[bytes]) -> None:
  with TFRecordWriter(path) as w:
    for r in records:
      w.write(r)


def _check_header(f, path: str, offset: int, file_size: int) -> int:
  """Reads and checks the header at `offset`; returns the payload length."""
  f.seek(offset)
  header = f.read(_HEADER)
  if len(header) != _HEADER:
    raise CorruptRecordError(f"{path}: truncated record header at byte offset {offset}")
  length, length_crc = struct.unpack("<QI", header)
  if masked_crc(header[:8]) != length_crc:
    raise CorruptRecordError(f"{path}: corrupt record length (CRC mismatch) at byte offset {offset}")
  if offset + _HEADER + length + _FOOTER > file_size:
    raise CorruptRecordError(
        f"{path}: record at byte offset {offset} claims {length} bytes, past the end of the file")
  return length


def _check_payload(f, path: str, offset: int, length: int, data: bytes | None) -> bytes:
  f.seek(offset + _HEADER)
  if data is None:
    data = f.read(length)
  else:
    f.seek(length, os.SEEK_CUR)
  (data_crc,) = struct.unpack("<I", f.read(_FOOTER))
  if _FAST_CRC and masked_crc(data) != data_crc:
    raise CorruptRecordError(f"{path}: corrupt record data (CRC mismatch) at byte offset {offset}")
  return data


def read_tfrecord(path: str) -> Iterator[tuple[int, bytes]]:
  """Yields (byte offset, payload) for each record; raises CorruptRecordError on bad framing."""
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    offset = 0
    while offset < size:
      length = _check_header(f, path, offset, size)
      yield offset, _check_payload(f, path, offset, length, None)
      offset += _HEADER + length + _FOOTER


def count_records(path: str) -> int:
  """Number of records in one file (walks the headers only)."""
  size, n, offset = os.path.getsize(path), 0, 0
  with open(path, "rb") as f:
    while offset < size:
      offset += _HEADER + _check_header(f, path, offset, size) + _FOOTER
      n += 1
  return n


class _CheckedIterator(grain.DatasetIterator):
  """Grain's TFRecord iterator plus CRC checks; yields {"raw": bytes, "source": "file@offset"}."""

  def __init__(self, path: str):
    super().__init__()
    self._path = path
    self._inner = iter(grain_exp.TFRecordIterDataset(path))
    self._check = open(path, "rb")
    self._size = os.path.getsize(path)

  def __next__(self) -> dict:
    offset = self._inner.get_state()["reader_offset"]
    if offset >= self._size:
      raise StopIteration
    # Check the header before grain reads: a corrupt length would make it allocate garbage sizes.
    length = _check_header(self._check, self._path, offset, self._size)
    try:
      data = next(self._inner)
    except ValueError as e:
      raise CorruptRecordError(f"{self._path}: unreadable record at byte offset {offset}: {e}") from None
    _check_payload(self._check, self._path, offset, length, data)
    return {"raw": data, "source": f"{self._path}@{offset}"}

  def get_state(self) -> dict:
    return self._inner.get_state()

  def set_state(self, state: dict) -> None:
    self._inner.set_state(state)

  def close(self) -> None:
    self._check.close()


class CheckedTFRecordIterDataset(grain.IterDataset):
  """One TFRecord file as an IterDataset of {"raw", "source"}; state = byte offset (exact resume)."""

  def __init__(self, path: str):
    super().__init__()
    self._path = path

  def __iter__(self) -> _CheckedIterator:
    return _CheckedIterator(self._path)


if not _FAST_CRC:
  logging.getLogger(__name__).warning(
      "google-crc32c (C) not available: TFRecord data CRCs are not checked on reading and "
      "writing is slow; pip install google-crc32c")

"""Where the training records come from: ``config.data.path``, or the synthetic set for the demo.

With ``data.path == ""`` and a ``data.synthetic_num`` field (configs/demo.py), the synthetic
try-on set is generated into ``WORKDIR/data/`` on the first run and converted to records; later
runs find the records and skip both. Generation happens in a temporary directory that is renamed
into place only when complete, so an interrupted run never leaves half a data set behind.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile

import jax
import ml_collections
from absl import logging


SYNTHETIC_MIN_RESOLUTION = 32  # data_pipelines.synthetic renders nothing smaller.


def records_dir(workdir: str) -> str:
  return os.path.join(workdir, "data", "records")


def _records_glob(directory: str) -> str:
  return os.path.join(directory, "train-*-of-*.tfrecord")  # data_pipelines' shard names.


def ensure_records(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Returns the records glob to train on; generates the synthetic set first if needed.

  Sets ``config.data.path`` to the returned glob, so the saved config names the data it used.
  """
  if config.data.path:
    if not glob.glob(config.data.path):
      raise FileNotFoundError(f"config.data.path={config.data.path!r} matches no files")
    return config.data.path
  if config.data.get("synthetic_num") is None:
    raise ValueError("config.data.path is empty: set --config.data.path=GLOB to the training "
                     "records (only configs/demo.py generates a synthetic set)")
  out = records_dir(workdir)
  if not glob.glob(_records_glob(out)):
    _generate_synthetic(config, workdir, out)
  else:
    logging.info("Synthetic records found in %s: skipping generation.", out)
  config.data.path = _records_glob(out)
  return config.data.path


def _generate_synthetic(config: ml_collections.ConfigDict, workdir: str, out: str) -> None:
  # Imported here: only the demo needs the converters.
  from data_pipelines import synthetic  # pylint: disable=g-import-not-at-top
  from data_pipelines import viton_hd  # pylint: disable=g-import-not-at-top

  # Records at the training resolution (the pipeline resizes anyway), but not below the
  # generator's smallest size.
  resolution = max(int(config.data.resolution), SYNTHETIC_MIN_RESOLUTION)
  # Photos are rendered at data.synthetic_resolution (if set) so that garment patterns stay crisp
  # after the converter's crop and downscale to the record resolution.
  render_resolution = max(int(config.data.get("synthetic_resolution", resolution)), resolution)
  parent = os.path.dirname(out)
  os.makedirs(parent, exist_ok=True)
  # A per-process temporary directory: hosts without a shared workdir each make their own copy
  # (the set is deterministic in config.seed), hosts sharing one keep the first complete copy.
  tmp = tempfile.mkdtemp(prefix=f".tmp-synthetic-p{jax.process_index()}-", dir=parent)
  try:
    logging.info("No data path given: generating %d synthetic pairs (rendered at %dpx, records "
                 "at %dpx) into %s ...", config.data.synthetic_num, render_resolution, resolution,
                 parent)
    raw = os.path.join(tmp, "raw")
    synthetic.generate(raw, num=int(config.data.synthetic_num), resolution=render_resolution,
                       seed=int(config.seed))
    tmp_records = os.path.join(tmp, "records")
    # The TFRecord pipeline splits files over hosts: a multi-host demo needs a shard per host.
    num_shards = None if jax.process_count() == 1 else jax.process_count()
    viton_hd.convert(raw, "train", tmp_records, resolution=resolution, progress=False,
                     num_shards=num_shards)
    if not glob.glob(_records_glob(tmp_records)):
      raise RuntimeError(f"converting the synthetic set wrote no records into {tmp_records}")
    try:
      os.rename(tmp_records, out)
    except OSError:
      if not (os.path.isdir(out) and os.listdir(out)):  # lost a race to another host: fine.
        raise
    raw_out = os.path.join(parent, "synthetic")
    if not os.path.exists(raw_out):  # keep the generated photos next to the records, to look at.
      os.rename(raw, raw_out)
    logging.info("Synthetic records written to %s (source images in %s)", out, raw_out)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)

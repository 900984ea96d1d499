"""Input-pipeline throughput: records/s of the Grain train pipeline (read + decode + preprocess +
augment + batch), in total and per host core.

  python -m benchmarks.data --config=configs/demo.py                 # synthetic records, generated
  python -m benchmarks.data --config=configs/base128.py --records='/data/train-*.tfrecord'

Without --records it renders --num synthetic pairs (data_pipelines.synthetic, at the config's
data.synthetic_resolution, else data.resolution) into a temporary directory and converts them with
data_pipelines.viton_hd, as the demo's own data set is made. It then iterates
tryon_jax.data.pipeline.make_train_dataset(config) exactly as the train loop does (infinite,
shuffled, batched to train.batch_size): --warmup batches untimed (prefetch threads start, file
caches warm), then --batches timed. records_per_s = batches x batch / seconds; per_core divides by
the cores this process may run on (os.sched_getaffinity). The data set repeats, so more records can
be timed than exist: each is decoded again every epoch, as in training.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import tempfile
import time
from collections.abc import Sequence

import numpy as np

from benchmarks import common

TABLE = "data"
COLUMNS = ("date", "device", "cores", "config", "records", "record_px", "resolution", "batch",
           "workers", "records_per_s", "records_per_s_per_core", "command")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default="configs/demo.py", help="config file[:variant]")
  p.add_argument("--records", default="", help="records glob ('' = generate synthetic records)")
  p.add_argument("--num", type=int, default=64, help="synthetic pairs to generate")
  p.add_argument("--record_resolution", type=int, default=0,
                 help="synthetic render + record size (0 = data.synthetic_resolution, else "
                      "data.resolution)")
  p.add_argument("--batch", type=int, default=0, help="batch size (0 = config.train.batch_size)")
  p.add_argument("--batches", type=int, default=30, help="timed batches")
  p.add_argument("--warmup", type=int, default=3, help="untimed batches first")
  p.add_argument("--workers", type=int, default=-1,
                 help="data.num_workers (grain processes; -1 = the config's)")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  p.add_argument("--results", default=common.DEFAULT_RESULTS,
                 help="markdown file to append the row to ('' = do not write)")
  return p.parse_args(argv)


def generate_records(config, out_dir: str, num: int, resolution: int) -> str:
  """Synthetic pairs rendered and converted to TFRecords under out_dir; returns their glob."""
  from data_pipelines import synthetic, viton_hd  # pylint: disable=g-import-not-at-top
  raw = os.path.join(out_dir, "raw")
  records = os.path.join(out_dir, "records")
  synthetic.generate(raw, num, resolution=resolution, seed=int(config.seed))
  summary = viton_hd.convert(raw, "train", records, resolution=resolution, progress=False)
  if not summary.get("written"):
    raise SystemExit(f"converting {num} synthetic pairs wrote no records into {records}")
  return os.path.join(records, "*.tfrecord")


def host_cores() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


def time_pipeline(config, batches: int, warmup: int) -> float:
  """Seconds to draw ``batches`` batches after ``warmup`` untimed ones."""
  from tryon_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  if config.data.num_workers > 0:
    from absl import flags  # pylint: disable=g-import-not-at-top
    if not flags.FLAGS.is_parsed():  # grain's mp_prefetch reads absl flags
      flags.FLAGS.mark_as_parsed()
  it = iter(pipeline.make_train_dataset(config))
  try:
    for _ in range(warmup):
      batch = next(it)
    start = time.perf_counter()
    for _ in range(batches):
      batch = next(it)
    seconds = time.perf_counter() - start
  finally:
    close = getattr(it, "close", None)
    if close is not None:
      close()
  images = np.asarray(batch["person"])
  if images.shape[0] != config.train.batch_size or not np.all(np.isfinite(images)):
    raise SystemExit(f"the pipeline yielded a bad batch: person {images.shape}")
  return seconds


def run(args: argparse.Namespace) -> dict:
  config = common.load_config(args.config, args.set)
  if args.batch:
    config.train.batch_size = args.batch
  if args.workers >= 0:
    config.data.num_workers = args.workers
  if args.batches < 1 or args.warmup < 0 or args.num < 1:
    raise SystemExit(f"--batches={args.batches} and --num={args.num} must be >= 1, "
                     f"--warmup={args.warmup} >= 0")
  record_px = args.record_resolution or int(config.data.get("synthetic_resolution",
                                                            config.data.resolution))
  tmp = None
  try:
    if args.records:
      if not glob.glob(args.records):
        raise SystemExit(f"--records={args.records!r} matches no files")
      config.data.path = args.records
      record_px = None  # whatever the records hold
      generate_s = 0.0
    else:
      tmp = tempfile.mkdtemp(prefix="tryon_bench_data_")
      start = time.perf_counter()
      config.data.path = generate_records(config, tmp, args.num, record_px)
      generate_s = time.perf_counter() - start
    seconds = time_pipeline(config, args.batches, args.warmup)
  finally:
    if tmp is not None:
      shutil.rmtree(tmp, ignore_errors=True)
  batch = int(config.train.batch_size)
  records_per_s = args.batches * batch / seconds
  cores = host_cores()
  return {"benchmark": TABLE, **common.device_info(), "cores": cores, "config": args.config,
          "overrides": list(args.set), "records": args.records or f"synthetic x{args.num}",
          "record_px": record_px or "", "resolution": int(config.data.resolution),
          "batch": batch, "workers": int(config.data.num_workers), "batches": args.batches,
          "seconds": seconds, "generate_s": generate_s, "records_per_s": records_per_s,
          "records_per_s_per_core": records_per_s / cores}


def main(argv: Sequence[str] | None = None) -> None:
  args = parse_args(argv)
  result = run(args)
  common.emit(result)
  if args.results:
    config = result["config"] + "".join(f" {s}" for s in result["overrides"])
    common.append_row(args.results, TABLE, COLUMNS, {
        **result, "device": result["device_kind"], "config": config,
        "command": common.command_line()})


if __name__ == "__main__":
  main()

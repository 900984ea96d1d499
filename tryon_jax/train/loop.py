"""The training loop and what users watch: progress lines, TensorBoard, sample grids, checkpoints.

``train(config, workdir)`` resumes from the newest readable checkpoint in ``WORKDIR/checkpoints``
(or starts from scratch), trains to ``config.train.num_steps``, and on SIGTERM (or a multi-host
preemption notice) saves and returns cleanly. A non-finite loss or gradient norm raises
NonFiniteLossError before anything from that step is saved, so the last checkpoint stays good.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import dataclasses
import datetime
import itertools
import json
import math
import os
import signal
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from PIL import Image

from tryon_jax.parallel import sharding
from tryon_jax.train import checkpoint as checkpoint_lib
from tryon_jax.train import data_setup
from tryon_jax.train import state as state_lib
from tryon_jax.train import step as step_lib

_BARRIER_IDS = itertools.count()
DatasetFn = Callable[..., Any]  # (config, *, process_index, process_count) -> grain.IterDataset
InitFn = Callable[[state_lib.StateSpec, Any], Any]  # (spec, fresh state) -> the state to start from


class NonFiniteLossError(RuntimeError):
  """The loss or the gradient norm became NaN or Inf."""


@dataclasses.dataclass
class TrainResult:
  step: int  # the step reached (== num_steps unless preempted)
  start_step: int  # the checkpoint step it resumed from (0 from scratch): it trained the rest
  preempted: bool
  last_metrics: dict[str, float]


def _default_dataset_fn() -> DatasetFn:
  from tryon_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  return pipeline.make_train_dataset


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, "checkpoints")


# ------------------------------------------------------------------------------------------ output


class MetricWriter:
  """Console progress lines, TensorBoard scalars/images (WORKDIR/tb) and WORKDIR/metrics.jsonl.

  Only process 0 writes; the others keep quiet.
  """

  def __init__(self, workdir: str, *, num_steps: int, global_batch: int):
    self.num_steps = num_steps
    self.global_batch = global_batch
    self.active = jax.process_index() == 0
    self._tb = None
    self._jsonl = None
    if self.active:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      self._tb = tensorboardX.SummaryWriter(logdir=os.path.join(workdir, "tb"))
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
    self._mark: tuple[int, float] | None = None  # (step, time) where throughput timing starts

  def start_timing(self, step: int) -> None:
    """Throughput is measured from here (after the first, compiling step)."""
    self._mark = (step, time.perf_counter())

  def write_scalars(self, step: int, metrics: dict[str, float]) -> None:
    if not self.active:
      return
    scalars = dict(metrics)
    line = [f"step {step}/{self.num_steps}", f"loss {scalars['loss']:.4f}"]
    if self._mark is not None and step > self._mark[0]:
      steps_per_sec = (step - self._mark[0]) / max(time.perf_counter() - self._mark[1], 1e-9)
      images_per_sec = steps_per_sec * self.global_batch
      eta = datetime.timedelta(seconds=round((self.num_steps - step) / steps_per_sec))
      scalars.update(steps_per_sec=steps_per_sec, images_per_sec=images_per_sec)
      line += [f"grad_norm {scalars['grad_norm']:.3f}", f"lr {scalars['lr']:.2e}",
               f"{steps_per_sec:.2f} steps/s", f"{images_per_sec:.1f} images/s", f"ETA {eta}"]
      self._mark = (step, time.perf_counter())
    logging.info(" | ".join(line))
    for name, value in scalars.items():
      self._tb.add_scalar(f"train/{name}", value, step)
    self._tb.flush()
    self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
    self._jsonl.flush()

  def write_image(self, step: int, tag: str, image: np.ndarray) -> None:
    """image: [H, W, 3] uint8."""
    if self.active:
      self._tb.add_image(tag, image, step, dataformats="HWC")
      self._tb.flush()

  def close(self) -> None:
    if self.active:
      self._tb.close()
      self._jsonl.close()


def to_uint8(images: np.ndarray) -> np.ndarray:
  """[..., 3] float in [-1, 1] -> uint8."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def make_grid(person: np.ndarray, garment: np.ndarray, tryon: np.ndarray) -> np.ndarray:
  """One row per example: person | garment | try-on. Inputs [N, H, W, 3] in [-1, 1] (the garment
  resized to H if it differs); returns [N * H, 3 * W, 3] uint8."""
  n, h, w, _ = tryon.shape
  columns = []
  for images in (person, garment, tryon):
    images = np.asarray(images, np.float32)
    if images.shape[1:3] != (h, w):
      images = np.asarray(jax.image.resize(images, (n, h, w, 3), "linear"))
    columns.append(to_uint8(images))
  rows = np.concatenate(columns, axis=2)  # [N, H, 3W, 3]
  return rows.reshape(n * h, 3 * w, 3)


def _numeric(batch: dict) -> dict:
  """The array entries of a host batch (drops ids and other strings)."""
  return {k: np.asarray(v) for k, v in batch.items()
          if isinstance(v, np.ndarray) and v.dtype.kind in "fiub"}


class SampleGridWriter:
  """Try-on grids sampled with the EMA parameters: PNGs in WORKDIR/samples/ and TensorBoard."""

  def __init__(self, config: ml_collections.ConfigDict, spec: state_lib.StateSpec, workdir: str, *,
               steps: int, writer: MetricWriter | None = None):
    from tryon_jax.diffusion import conditioning  # pylint: disable=g-import-not-at-top
    from tryon_jax.diffusion import samplers  # pylint: disable=g-import-not-at-top

    self.config = config
    self.out_dir = os.path.join(workdir, "samples")
    self.writer = writer
    self.replicated = sharding.replicated_sharding(spec.mesh)
    self.key = jax.random.key(int(config.seed) + 1)  # fixed: grids of successive steps compare.

    def sample_fn(state, batch, key):
      model = state_lib.ema_model(spec, state)
      cond_key, sample_key = jax.random.split(key)
      cond = conditioning.inference_cond(batch, cond_key, config)
      return samplers.sample(model, cond, sample_key, config, shape=batch["person"].shape,
                             steps=steps)

    self._sample = jax.jit(sample_fn, in_shardings=(spec.shardings, self.replicated, None),
                           out_shardings=self.replicated)
    self._compiled = {}  # batch shape -> executable
    self._sync_timeout_s = float(config.train.host_sync_timeout_s)
    self.mesh = spec.mesh

  def __call__(self, state: Any, host_batch: dict, name: str, step: int) -> str | None:
    """Samples try-ons for ``host_batch`` (the same on every host); returns the PNG path on
    host 0, None elsewhere."""
    batch = sharding.host_local_to_global(_numeric(host_batch), self.replicated)
    shape = batch["person"].shape
    with jax.set_mesh(self.mesh):
      if shape not in self._compiled:  # compile everywhere before the first collective runs
        self._compiled[shape] = self._sample.lower(state, batch, self.key).compile()
        sync_hosts(f"tryon_jax_sampler_compiled_{'x'.join(map(str, shape))}",
                   self._sync_timeout_s)
      tryon = np.asarray(jax.device_get(self._compiled[shape](state, batch, self.key)))
    if jax.process_index() != 0:
      return None
    grid = make_grid(host_batch["person"], host_batch["garment"], tryon)
    os.makedirs(self.out_dir, exist_ok=True)
    path = os.path.join(self.out_dir, f"{name}.png")
    Image.fromarray(grid).save(path)
    if self.writer is not None:
      self.writer.write_image(step, "samples/person_garment_tryon", grid)
    logging.info("Wrote sample grid %s", path)
    return path


def first_eval_batch(config: ml_collections.ConfigDict, path: str, batch_size: int) -> dict:
  from tryon_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  return next(iter(pipeline.make_eval_dataset(config, path, batch_size)))


# ------------------------------------------------------------------------------------------ train


class _PreemptionFlag:
  """SIGTERM -> save at the next step boundary and exit cleanly (single-process runs).

  Multi-host runs use Orbax's reached_preemption instead, which makes every host stop at the same
  step; a Python handler there would replace JAX's own preemption notifier.
  """

  def __init__(self):
    self.received = False
    self._previous = None

  def __enter__(self):
    if jax.process_count() == 1:
      try:
        self._previous = signal.signal(signal.SIGTERM, self._handle)
      except ValueError:  # not the main thread: leave signals alone.
        self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM received: saving a checkpoint at the end of this step.")
    self.received = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _config_json(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json_best_effort())


def _finite_host_metrics(step: int, metrics: dict, ckpt: checkpoint_lib.Checkpointer) -> dict:
  host = {k: float(v) for k, v in jax.device_get(metrics).items()}
  bad = [k for k in ("loss", "grad_norm") if not math.isfinite(host[k])]
  if bad:
    ckpt.wait()
    last = ckpt.latest_step()
    raise NonFiniteLossError(
        f"non-finite {' and '.join(bad)} at step {step} (loss={host['loss']}, "
        f"grad_norm={host['grad_norm']}): training stopped. Nothing from this step was saved; "
        f"the last good checkpoint is "
        f"{os.path.join(ckpt.directory, str(last)) if last is not None else 'none'}. "
        f"Lower --config.train.lr, check the data, or try --config.model.dtype=float32.")
  return host


def train(config: ml_collections.ConfigDict, workdir: str, *,
          dataset_fn: DatasetFn | None = None,
          loss_fn: step_lib.LossFn | None = None,
          ema_fn: step_lib.EmaFn | None = None,
          init_fn: InitFn | None = None) -> TrainResult:
  """Trains ``config`` in ``workdir`` (resuming if it holds checkpoints). See module docstring.

  dataset_fn / loss_fn / ema_fn replace the data pipeline and the diffusion objective (tests).
  init_fn edits the freshly initialized state before step 0 (a warm start; benchmarks.learning's
  planted attention); a run that resumes from a checkpoint never calls it.
  """
  tc = config.train
  os.makedirs(workdir, exist_ok=True)
  if dataset_fn is None:
    data_setup.ensure_records(config, workdir)
    dataset_fn = _default_dataset_fn()
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
      f.write(config.to_json_best_effort(indent=2))

  sync_hosts("tryon_jax_train_start", tc.host_sync_timeout_s)  # data set-up takes unequal times
  mesh = sharding.make_mesh(config.mesh.shape, config.mesh.axes)
  logging.info("Mesh %s over %d devices (%d processes).", dict(mesh.shape), mesh.size,
               jax.process_count())
  spec = state_lib.state_spec(config, mesh)
  ckpt = checkpoint_lib.Checkpointer(checkpoint_dir(workdir), max_to_keep=tc.max_to_keep,
                                     async_save=tc.async_checkpointing)

  def make_data_iter() -> Iterator[dict]:
    return iter(dataset_fn(config, process_index=jax.process_index(),
                           process_count=jax.process_count()))

  restored = ckpt.restore_latest(spec.abstract, make_data_iter)
  if restored is not None:
    start_step, state, data_iter = restored
    logging.info("Resuming from checkpoint %s (step %d).",
                 os.path.join(ckpt.directory, str(start_step)), start_step)
  else:
    logging.info("No checkpoint in %s: initializing from scratch (seed %d).", ckpt.directory,
                 config.seed)
    state = state_lib.init_state(config, spec)
    if init_fn is not None:
      state = init_fn(spec, state)
    data_iter = make_data_iter()
    start_step = 0

  train_step = step_lib.make_train_step(config, spec, loss_fn=loss_fn, ema_fn=ema_fn)
  batch_sharding = sharding.batch_sharding(mesh)
  writer = MetricWriter(workdir, num_steps=tc.num_steps, global_batch=tc.batch_size)
  sampler = None
  sample_batch = None
  config_json = _config_json(config)

  compiled_step = None
  step = start_step
  last_saved = start_step if restored is not None else None
  last_metrics: dict[str, float] = {}
  preempted = False

  def save(at_step: int) -> None:
    nonlocal last_saved
    if last_saved != at_step:
      ckpt.save(at_step, state, data_iter=data_iter, config_json=config_json)
      last_saved = at_step

  try:
    with _PreemptionFlag() as sigterm:
      pending = None  # (step, device metrics) not yet checked: checked one step late, so the
      # host never waits for the device except at checkpoints.
      while step < tc.num_steps:
        if sigterm.received or (jax.process_count() > 1 and ckpt.reached_preemption(step)):
          if pending is not None:
            last_metrics = _finite_host_metrics(*pending, ckpt)
            pending = None
          save(step)
          ckpt.wait()
          logging.warning("Preempted: saved checkpoint at step %d; run the same command again "
                          "to resume.", step)
          preempted = True
          break
        host_batch = next(data_iter)
        local = _numeric(host_batch)
        global_rows = next(iter(local.values())).shape[0] * jax.process_count()
        if global_rows != tc.batch_size:
          raise ValueError(f"the data pipeline yields {global_rows} rows per step over all "
                           f"hosts, config.train.batch_size is {tc.batch_size}")
        batch = sharding.host_local_to_global(local, batch_sharding)
        if compiled_step is None:
          compiled_step = _compile_everywhere(train_step, state, batch, mesh, tc)
        with jax.set_mesh(mesh):
          state, metrics = compiled_step(state, batch)
        step += 1
        if pending is not None:
          last_metrics = _check_and_log(pending, ckpt, writer, tc, start_step)
        pending = (step, metrics)
        if step % tc.checkpoint_every_steps == 0 or step == tc.num_steps:
          last_metrics = _check_and_log(pending, ckpt, writer, tc, start_step)
          pending = None
          save(step)
        if tc.sample_every_steps and step % tc.sample_every_steps == 0:
          if pending is not None:  # never spend minutes sampling from a NaN state
            last_metrics = _check_and_log(pending, ckpt, writer, tc, start_step)
            pending = None
          if sampler is None:
            sampler = SampleGridWriter(config, spec, workdir, steps=tc.sample_steps, writer=writer)
            sample_batch = first_eval_batch(config, config.data.path, tc.sample_num)
          sampler(state, sample_batch, f"step_{step:07d}", step)
      if pending is not None:
        last_metrics = _check_and_log(pending, ckpt, writer, tc, start_step)
    ckpt.wait()
  finally:
    ckpt.close()
    writer.close()
    close = getattr(data_iter, "close", None)
    if close is not None:
      close()
  if not preempted:
    logging.info("Training finished at step %d; checkpoints in %s.", step, ckpt.directory)
  return TrainResult(step=step, start_step=start_step, preempted=preempted,
                     last_metrics=last_metrics)


def sync_hosts(name: str, timeout_s: float) -> None:
  """Barrier over all processes through the coordination service (no-op on one process)."""
  if jax.process_count() > 1:  # barrier keys must be unique: number them (same on every host).
    ocp.multihost.get_barrier_sync_fn()(key=f"{name}_{next(_BARRIER_IDS)}",
                                        timeout_ms=int(timeout_s * 1000))


def _compile_everywhere(train_step, state, batch, mesh, tc: ml_collections.ConfigDict):
  """Compiles the step ahead of time, then waits until every host has.

  Hosts finish compiling at different times; the first step's collectives must not start
  before all are ready (CPU gloo gives up after 30 s, accelerators' collectives also time out).
  """
  with jax.set_mesh(mesh):
    compiled = train_step.lower(state, batch).compile()
  sync_hosts("tryon_jax_train_step_compiled", tc.host_sync_timeout_s)
  return compiled


def _check_and_log(pending: tuple[int, dict], ckpt: checkpoint_lib.Checkpointer,
                   writer: MetricWriter, tc: ml_collections.ConfigDict, start_step: int) -> dict:
  step, metrics = pending
  host = _finite_host_metrics(step, metrics, ckpt)
  if step == start_step + 1:
    writer.start_timing(step)  # the first step compiled: leave it out of the throughput.
  if step % tc.log_every_steps == 0 or step == tc.num_steps or step == start_step + 1:
    writer.write_scalars(step, host)
  return host


# ------------------------------------------------------------------------------------------ sample


def saved_steps(workdir: str) -> list[int]:
  """The steps of the finalized checkpoints in WORKDIR/checkpoints, oldest first (read-only)."""
  directory = checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    return []
  ckpt = checkpoint_lib.Checkpointer(directory, max_to_keep=None, async_save=False,
                                     read_only=True)
  try:
    return ckpt.all_steps()
  finally:
    ckpt.close()


def restore_state(config: ml_collections.ConfigDict, workdir: str, step: int | None = None
                  ) -> tuple[state_lib.StateSpec, int, Any]:
  """(spec, step, train state) of checkpoint ``step`` in WORKDIR/checkpoints, or of the newest
  readable one when ``step`` is None, on the config's mesh. The checkpoints are opened read-only,
  so this is safe beside a job still training in WORKDIR. Raises FileNotFoundError when there is
  no such checkpoint."""
  mesh = sharding.make_mesh(config.mesh.shape, config.mesh.axes)
  spec = state_lib.state_spec(config, mesh)
  directory = checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"no checkpoint in {os.path.abspath(directory)}")
  ckpt = checkpoint_lib.Checkpointer(directory, max_to_keep=None, async_save=False,
                                     read_only=True)
  try:
    if step is None:
      restored = ckpt.restore_latest(spec.abstract)
    elif step in ckpt.all_steps():
      restored = step, ckpt.restore(step, spec.abstract)["state"], None
    else:
      raise FileNotFoundError(f"no checkpoint at step {step} in {ckpt.directory}; it holds steps "
                              f"{ckpt.all_steps()}")
  finally:
    ckpt.close()
  if restored is None:
    raise FileNotFoundError(f"no checkpoint in {ckpt.directory}")
  step, state, _ = restored
  return spec, step, state


def sample_from_checkpoint(config: ml_collections.ConfigDict, workdir: str, data_path: str,
                           num_records: int) -> list[str]:
  """Try-on grids (EMA parameters of the newest checkpoint) for the first ``num_records`` records
  of ``data_path``, ``config.train.sample_num`` per PNG in WORKDIR/samples/. Returns the paths."""
  if not data_path:
    raise ValueError("--mode=sample needs records: pass --sample_data=GLOB or "
                     "--config.data.path=GLOB")
  spec, step, state = restore_state(config, workdir)
  logging.info("Sampling with the EMA parameters of checkpoint step %d.", step)
  from tryon_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  per_grid = int(config.train.sample_num)
  sampler = SampleGridWriter(config, spec, workdir, steps=int(config.diffusion.sample_steps))
  paths = []
  for i, batch in enumerate(pipeline.make_eval_dataset(config, data_path, per_grid)):
    if i * per_grid >= num_records:
      break
    path = sampler(state, batch, f"sample_step{step}_{i:03d}", step)
    if path:
      paths.append(path)
  return paths

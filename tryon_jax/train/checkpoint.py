"""Orbax checkpoints of the train state, the Grain iterator and the config, with a safe restore.

Layout: ``WORKDIR/checkpoints/<step>/{state,data_iter,config}``. Orbax writes each checkpoint into
a temporary directory and renames it only when complete, so an interrupted save never looks like a
checkpoint (leftover temporaries are cleaned up on the next start). A finalized checkpoint that
still fails to restore (truncated or deleted files) is moved to ``WORKDIR/checkpoints_corrupt/``
with a warning, and the previous one is restored instead; it is moved, not deleted, so that
nothing is lost and a later save cannot collide with its step number. A reader opened with
``read_only=True`` (evaluation, probes, sampling beside a running job) changes nothing on disk: it
neither cleans up temporaries, which may be the trainer's save in progress, nor moves a checkpoint
it cannot read.
"""

from __future__ import annotations

from collections.abc import Callable
import os
import shutil
import time
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils


class NoRestorableCheckpointError(RuntimeError):
  """Checkpoints exist in the directory but none of them can be restored."""


class Checkpointer:
  """A CheckpointManager of items ``state`` (nnx.State), ``data_iter`` (Grain), ``config``."""

  def __init__(self, directory: str, *, max_to_keep: int | None, async_save: bool = True,
               read_only: bool = False):
    self.directory = os.path.abspath(directory)
    self.read_only = read_only
    self.quarantine_dir = os.path.join(os.path.dirname(self.directory),
                                       os.path.basename(self.directory) + "_corrupt")
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, enable_async_checkpointing=async_save,
        cleanup_tmp_directories=not read_only, read_only=read_only, create=not read_only)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, *, data_iter: Any = None, config_json: dict | None = None,
           force: bool = True) -> bool:
    """Starts writing checkpoint ``step`` (asynchronously); earlier writes are awaited first."""
    items = {"state": ocp.args.StandardSave(state)}
    if data_iter is not None:
      items["data_iter"] = grain.checkpoint.CheckpointSave(data_iter)
    if config_json is not None:
      items["config"] = ocp.args.JsonSave(config_json)
    return self.manager.save(step, args=ocp.args.Composite(**items), force=force)

  def reached_preemption(self, step: int) -> bool:
    """True on every host at the same step once any host got a preemption notice (multi-host)."""
    return self.manager.reached_preemption(step)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()

  def restore(self, step: int, abstract_state: Any, data_iter: Any = None) -> dict:
    """Restores checkpoint ``step`` onto the shardings carried by ``abstract_state``."""
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iter is not None:
      items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
    return self.manager.restore(step, args=ocp.args.Composite(**items))

  def restore_latest(
      self, abstract_state: Any, make_data_iter: Callable[[], Any] | None = None
  ) -> tuple[int, Any, Any] | None:
    """Restores the newest readable checkpoint: (step, state, data_iter), or None if there is none.

    A checkpoint that fails to restore is moved aside with a warning and the previous one is
    tried (read-only: skipped, left where it is). Raises NoRestorableCheckpointError when
    checkpoints exist but none restores, rather than silently training from scratch over them.
    """
    steps = self.all_steps()
    failures = []
    for step in reversed(steps):
      data_iter = make_data_iter() if make_data_iter is not None else None
      try:
        restored = self.restore(step, abstract_state, data_iter)
        error = None
      except Exception as e:  # pylint: disable=broad-except  # any unreadable file means corrupt.
        restored, error = None, e
      if _all_hosts_ok(error is None):
        return step, restored["state"], restored.get("data_iter") if data_iter is not None else None
      reason = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}" if error else (
          "restore failed on another host")
      moved = "left in place (read-only)" if self.read_only else f"moved to {self.quarantine_dir}"
      logging.warning("Checkpoint %s/%d cannot be restored (%s); %s, falling back to the previous "
                      "checkpoint.", self.directory, step, reason, moved)
      failures.append(step)
      if not self.read_only:
        self._quarantine(step)
    if failures:
      moved = "were left in place" if self.read_only else f"were moved to {self.quarantine_dir}"
      raise NoRestorableCheckpointError(
          f"none of the checkpoints {failures} in {self.directory} can be restored; they "
          f"{moved}. Restore one by hand or start a fresh --workdir.")
    return None

  def _quarantine(self, step: int) -> None:
    if jax.process_index() == 0:
      os.makedirs(self.quarantine_dir, exist_ok=True)
      target = os.path.join(self.quarantine_dir, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
      shutil.move(os.path.join(self.directory, str(step)), target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"quarantine checkpoint {step}")
    self.manager.reload()


def _all_hosts_ok(ok: bool) -> bool:
  """Agreement across hosts, so that all of them restore the same step."""
  if jax.process_count() == 1:
    return ok
  return bool(np.all(multihost_utils.process_allgather(np.asarray(ok, np.int32))))
